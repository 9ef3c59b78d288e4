"""uebench's reproductions of OpenCV against OpenCV itself: the 8-bit YUV and Lab conversions and equalizeHist that
DUNE's colour-domain defenses run (hist-eq, lab-whiten, yuv-whiten), on seeded random images, edge cases and, where
../shared/data is present, real CIFAR-10 images. uebench claims these equal, value for value, so every comparison is
exact. Skipped where OpenCV is not installed (opencv-python-headless is in the test extra)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from uebench.defenses import _color, create_defense
from uebench.defenses.histeq import equalise

cv2 = pytest.importorskip("cv2")

CONVERSIONS = {
    "rgb->yuv": (_color.rgb_to_yuv, cv2.COLOR_RGB2YUV),
    "yuv->rgb": (_color.yuv_to_rgb, cv2.COLOR_YUV2RGB),
    "rgb->lab": (_color.rgb_to_lab, cv2.COLOR_RGB2Lab),
    "lab->rgb": (_color.lab_to_rgb, cv2.COLOR_Lab2RGB),
}
SPACES = {"yuv": ("rgb->yuv", "yuv->rgb"), "lab": ("rgb->lab", "lab->rgb")}


def random_images(n: int = 300, seed: int = 0) -> list[np.ndarray]:
    return list(np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))


def edge_images() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    out = [np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)]
    for v in (0, 1, 127, 128, 254, 255):
        out.append(np.full((8, 8, 3), v, np.uint8))  # flat gray
        for c in range(3):  # one channel of one value, the others random
            im = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            im[..., c] = v
            out.append(im)
    # saturated colours: the hue circle at full saturation (one channel 255, one 0, one ramping), the cube's corners
    ramp = np.arange(256, dtype=np.uint8)
    full, zero = np.full(256, 255, np.uint8), np.zeros(256, np.uint8)
    hues = [(full, ramp, zero), (ramp[::-1], full, zero), (zero, full, ramp), (zero, ramp[::-1], full)]
    hues += [(ramp, zero, full), (full, zero, ramp[::-1])]
    out.append(np.concatenate([np.stack(h, -1) for h in hues]).reshape(48, 32, 3))
    corners = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], np.uint8)
    out.append(np.tile(corners, (4, 1)).reshape(4, 8, 3))
    out.append(np.repeat(ramp, 3).reshape(16, 16, 3))  # the gray ramp, every level once
    return out


@functools.cache
def cifar_images(root: str) -> list[np.ndarray]:
    from uebench.data import load

    return list(load("cifar10", root, "train").images[:500].permute(0, 2, 3, 1).numpy())


@pytest.fixture(params=["random", "edges", "cifar"])
def images(request) -> list[np.ndarray]:
    if request.param == "cifar":
        return cifar_images(str(request.getfixturevalue("shared_data")))
    return random_images() if request.param == "random" else edge_images()


def channels_first(im: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float()


def channels_last(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).numpy().astype(np.uint8)


def mismatches(fn, code: int, ims: list[np.ndarray]) -> int:
    return sum(int((channels_last(fn(channels_first(im))) != cv2.cvtColor(im, code)).sum()) for im in ims)


@pytest.mark.parametrize("space", SPACES)
def test_conversions_equal_cvtcolor(space, images):
    forward, backward = (CONVERSIONS[k] for k in SPACES[space])
    assert mismatches(*forward, images) == 0
    # backward from OpenCV's own forward output (in gamut) and from the raw bytes read as YUV/Lab (any triple)
    converted = [cv2.cvtColor(im, forward[1]) for im in images]
    assert mismatches(*backward, converted) == 0
    assert mismatches(*backward, images) == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", CONVERSIONS)
def test_conversions_equal_cvtcolor_on_every_8bit_input(name):
    fn, code = CONVERSIONS[name]
    every = np.arange(1 << 24, dtype=np.uint32)
    every = np.stack([every >> 16, every >> 8 & 255, every & 255], -1).astype(np.uint8).reshape(256, 65536, 3)
    assert mismatches(fn, code, list(every.reshape(32, 8, 65536, 3))) == 0


def tie_channels() -> list[np.ndarray]:
    """Few-level channels of odd sizes, where (c(v) - h(m)) * 255 / (N - h(m)) is often an exact half."""
    rng = np.random.default_rng(2)
    out = [(rng.integers(0, k, (7, 9)) * (255 // (k - 1))).astype(np.uint8) for k in (2, 3, 5, 6, 8) for _ in range(40)]
    # 28 * 255 / 56 = 127.5 exactly, but OpenCV's float32 scale makes it 127.49999: 127 (a half-to-even 128 is wrong)
    counts = [7, 9, 8, 5, 6, 10, 7, 11]
    out.append(np.repeat(np.arange(0, 256, 36, dtype=np.uint8), counts).reshape(7, 9))
    return out


def test_equalise_equals_equalizehist(images):
    for im in images:
        ours = channels_last(equalise(channels_first(im)))
        theirs = np.stack([cv2.equalizeHist(np.ascontiguousarray(im[..., c])) for c in range(3)], -1)
        assert np.array_equal(ours, theirs)


def test_equalise_equals_equalizehist_on_rounding_ties():
    for ch in tie_channels():
        assert np.array_equal(equalise(torch.from_numpy(ch)[None, None].float())[0, 0].numpy(), cv2.equalizeHist(ch))


def test_the_rounding_tie_is_opencvs_float32():
    ch = tie_channels()[-1]
    assert cv2.equalizeHist(ch)[ch == 144][0] == 127
    assert np.float32(np.float32(255) / np.float32(56) * np.float32(28)) < 127.5


@pytest.mark.parametrize("space", SPACES)
def test_whitening_is_opencvs_conversions_around_its_float_steps(space, images):
    """The defense end to end against cv2.cvtColor there and back, the float steps (uebench's) in between."""
    forward, backward = (CONVERSIONS[k][1] for k in SPACES[space])
    defense = create_defense(f"{space}-whiten")
    for im in images:
        out, _ = defense.batch(channels_first(im) / 255, torch.zeros(1, dtype=torch.long))
        stretched = _color.stretch(_color.standardise(channels_first(cv2.cvtColor(im, forward))), dims=(2, 3))
        assert np.array_equal(channels_last((out * 255).round()), cv2.cvtColor(channels_last(stretched), backward))


@pytest.mark.parametrize("space", SPACES)
def test_whitening_float_steps_differ_from_numpy_only_where_truncation_meets_a_whole_value(space, images):
    """Standardise then stretch is (c - min) * 255 / (max - min) in exact arithmetic; where that is whole, truncating
    it is decided by rounding noise, so NumPy in float32 and torch may differ there by one
    level, and nowhere else: any other value is at least 1/255 from a whole one."""
    forward = CONVERSIONS[SPACES[space][0]][1]
    for im in images:
        c = cv2.cvtColor(im, forward).astype(np.float32)
        ours = channels_last(_color.stretch(_color.standardise(channels_first(c)), dims=(2, 3)))
        std = c.std(axis=(0, 1))
        z = (c - c.mean(axis=(0, 1))) / np.where(std < 1e-6, 1, std)
        lo, span = z.min(axis=(0, 1)), z.max(axis=(0, 1)) - z.min(axis=(0, 1))
        numpy = np.where(span < 1e-6, 0, np.clip((z - lo) / np.where(span < 1e-6, 1, span) * 255, 0, 255))
        numpy = numpy.astype(np.uint8)
        cmin, crange = c.min(axis=(0, 1)), c.max(axis=(0, 1)) - c.min(axis=(0, 1))
        whole = (crange == 0) | ((c - cmin) * 255 % np.where(crange == 0, 1, crange) == 0)
        diff = ours.astype(int) - numpy.astype(int)
        assert np.abs(diff).max() <= 1 and not (diff != 0)[~whole].any()
