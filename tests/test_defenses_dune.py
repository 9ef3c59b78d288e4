"""The defenses DUNE (ICML 2026) evaluates against, beside ISS's: COIN's random pixel interpolation, ISS-J/G, and the
colour-domain ones (per-image channel normalisation, histogram equalisation, Lab/YUV whitening, colour shift with
noise). Hand-worked cases of each definition, scipy's interpolation for COIN, and the invariants of a batch defense."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from uebench.core.errors import UserError
from uebench.data import ImageDataset
from uebench.defenses import _color, create_defense
from uebench.defenses.coin import bilinear_at, coin, legacy_wrap
from uebench.defenses.gray import luma_u8
from uebench.defenses.jpeg import jpeg_roundtrip

RANDOM = ["coin", "color-shift"]
FIXED = ["channel-norm", "hist-eq", "lab-whiten", "yuv-whiten"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def u8_batch(n: int = 6, seed: int = 0, h: int = 32, w: int = 32) -> torch.Tensor:
    """Float images holding k/255 values, what the trainer's crop/flip of uint8 data gives a batch defense."""
    return torch.randint(0, 256, (n, 3, h, w), generator=gen(seed)).float() / 255


def run(name: str, x: torch.Tensor, seed: int = 0, **params) -> torch.Tensor:
    y = torch.zeros(len(x), dtype=torch.long)
    out, y2 = create_defense(name, **params).batch(x.clone(), y, generator=gen(seed))
    assert torch.equal(y2, y)
    return out


def image(channels: list[list[float]]) -> torch.Tensor:
    """One 1 x W image from three rows of pixel values, as a float k/255 batch."""
    return torch.tensor(channels, dtype=torch.float32)[None, :, None, :] / 255


# ---- invariants -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", RANDOM + FIXED)
def test_batch_invariants_shape_range_whole_levels_and_determinism(name):
    x = u8_batch()
    a, b = run(name, x, seed=1), run(name, x, seed=1)
    assert a.shape == x.shape and a.dtype == x.dtype and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, x)
    if name == "color-shift":  # the only one the model sees unquantised (DUNE applies it after ToTensor)
        assert not torch.equal((a * 255).round() / 255, a)
    else:
        assert torch.allclose(a * 255, (a * 255).round(), atol=1e-4)
    c = run(name, x, seed=2)
    assert torch.equal(a, c) != (name in RANDOM)  # a draw per call for the random ones, none for the others


@pytest.mark.parametrize("name", ["coin", "color-shift", "channel-norm", "hist-eq", "lab-whiten", "yuv-whiten"])
def test_published_defaults_and_listed(name):
    d = create_defense(name)
    assert d.kind == "augment" and d.in_probe and ("a35cbb6" in d.source or "6577fa8" in d.source)
    assert create_defense("coin").alpha == 2.0
    assert (create_defense("color-shift").config.shift, create_defense("color-shift").config.std) == (8.0, 8.0)
    assert (create_defense("jpeg-gray").config.quality, create_defense("jpeg-gray").config.order) == (10, "jpeg-gray")


@pytest.mark.parametrize(
    "name, params",
    [
        ("coin", {"severity": 0}),
        ("coin", {"severity": 8}),
        ("coin", {"severity": 2.5}),
        ("color-shift", {"shift": -1}),
        ("color-shift", {"std": 300}),
        ("color-shift", {"std": "big"}),
        ("jpeg-gray", {"order": "both"}),
        ("jpeg-gray", {"quality": 0}),
        ("hist-eq", {"bins": 10}),
    ],
)
def test_bad_options_are_one_user_error(name, params):
    with pytest.raises(UserError, match=f"defense '{name}'"):
        create_defense(name, **params)


# ---- COIN ------------------------------------------------------------------------------------------------------
def test_coin_wrap_and_bilinear_match_scipy_map_coordinates():
    """The public code resamples with scipy.ndimage.map_coordinates(order=1, mode='wrap'): same values here, for
    displacements that leave the image on every side (scipy's legacy wrap has period side - 1)."""
    g = gen(3)
    x = u8_batch(2, seed=3, h=7, w=9)
    n, c, h, w = x.shape
    d_r = (torch.rand(n, h, w, generator=g) * 2 - 1) * 3.2
    d_c = (torch.rand(n, h, w, generator=g) * 2 - 1) * 3.2
    rows = torch.arange(h).view(1, h, 1).float() + d_r
    cols = torch.arange(w).view(1, 1, w).float() + d_c
    ours = bilinear_at(x.double(), legacy_wrap(rows.double(), h), legacy_wrap(cols.double(), w))
    for i in range(n):
        for ch in range(c):
            ref = map_coordinates(
                x[i, ch].double().numpy(), [rows[i].double().numpy(), cols[i].double().numpy()], order=1, mode="wrap"
            )
            np.testing.assert_allclose(ours[i, ch].numpy(), ref, atol=1e-9)


def test_legacy_wrap_hand_worked():
    # side 5: period 4; -0.5 -> 3.5, -4 -> 4 (scipy's quirk: the last sample), 4.2 -> 0.2, 8 -> 0, 9.1 -> 1.1
    v = torch.tensor([-0.5, -4.0, 4.2, 8.0, 9.1, 4.0, 0.0], dtype=torch.float64)
    assert torch.allclose(legacy_wrap(v, 5), torch.tensor([3.5, 4.0, 0.2, 0.0, 1.1, 4.0, 0.0], dtype=torch.float64))


def test_coin_truncates_like_np_uint8_and_keeps_a_flat_image_within_a_level():
    flat = torch.full((2, 3, 8, 8), 77 / 255)
    out = coin(flat, 2.0, gen(0)) * 255
    assert ((out == 77) | (out == 76)).all()  # float32 interpolation of 77/255, times 255, truncated: 77 or 76
    x = u8_batch(4, seed=5)
    y = coin(x, 2.0, gen(0))
    # displacements up to 2 px: every output value lies between the extremes of its 5x5 (wrapped) neighbourhood
    pad = torch.cat([x[..., -3:, :], x, x[..., :3, :]], dim=-2)
    pad = torch.cat([pad[..., -3:], pad, pad[..., :3]], dim=-1)
    hi = torch.nn.functional.max_pool2d(pad, 7, stride=1)
    assert (y <= hi + 1e-6).all() and (x - y).abs().mean() > 20 / 255


# ---- ISS-J/G ---------------------------------------------------------------------------------------------------
def test_jpeg_gray_orders_are_the_named_compositions():
    images = torch.randint(0, 256, (20, 3, 32, 32), generator=gen(7), dtype=torch.uint8)
    jg = create_defense("jpeg-gray").filter(images)
    gj = create_defense("jpeg-gray", order="gray-jpeg").filter(images)
    assert torch.equal(jg, luma_u8(jpeg_roundtrip(images, 10)))
    assert torch.equal(gj, jpeg_roundtrip(luma_u8(images), 10))
    for out in (jg, gj):  # both end exactly gray
        assert (out[:, 0] == out[:, 1]).all() and (out[:, 1] == out[:, 2]).all()
    differ = (jg != gj).float().mean()
    assert 0 < differ < 0.02  # JPEG codes luma apart from chroma: the orders differ only by conversion rounding
    assert (jg.float() - luma_u8(images).float()).abs().mean() > 5  # and both really compress
    ds = ImageDataset("toy", "train", images, torch.arange(20) % 3, ["a", "b", "c"])
    d = create_defense("jpeg-gray")
    assert torch.equal(d.prepare(ds).images, jg) and d.prepare_test(ds) is ds


# ---- per-image channel normalisation ---------------------------------------------------------------------------
def test_channel_norm_hand_worked():
    # R [0, 100] -> standardised [-1, 1]; G flat 50 -> [0, 0]; B [10, 30] -> [-1, 1]; one min/max over the image,
    # (v + 1) / 2 * 255 truncated: G's 127.5 becomes 127
    out = run("channel-norm", image([[0, 100], [50, 50], [10, 30]])) * 255
    assert torch.equal(out.round()[0, :, 0], torch.tensor([[0.0, 255.0], [127.0, 127.0], [0.0, 255.0]]))
    flat = torch.full((1, 3, 4, 4), 9 / 255)
    assert torch.equal(run("channel-norm", flat), torch.zeros_like(flat))  # a flat image becomes black


def test_channel_norm_removes_a_per_channel_offset_and_gain():
    x = u8_batch(2, seed=9) * 0.5
    cast = x.clone()
    cast[:, 0] = cast[:, 0] * 1.5 + 0.2  # a colour cast: red gain and offset (still k/255 values? not needed)
    cast = (cast * 255).round() / 255
    a, b = run("channel-norm", x), run("channel-norm", cast)
    d = (a - b).abs()
    assert d.max() <= 3 / 255 and d.mean() < 0.5 / 255  # equal up to the rounding of the cast itself


# ---- histogram equalisation ------------------------------------------------------------------------------------
def test_hist_eq_hand_worked_opencv_definition():
    # 7 pixels, values 5..11 once each: lowest 5 -> 0, scale 255/6 = 42.5, round half to even (OpenCV's cvRound)
    row = [5, 6, 7, 8, 9, 10, 11]
    out = run("hist-eq", image([row, row[::-1], [3] * 7])) * 255
    expect = torch.tensor([0, 42, 85, 128, 170, 212, 255], dtype=torch.float32)
    assert torch.equal(out.round()[0, 0, 0], expect)
    assert torch.equal(out.round()[0, 1, 0], expect.flip(0))
    assert torch.equal(out.round()[0, 2, 0], torch.full((7,), 3.0))  # a channel of one value stays as it is
    # repeated lowest value: [10, 10, 20, 30] -> 0, 0, round(127.5) = 128, 255
    out = run("hist-eq", image([[10, 10, 20, 30]] * 3)) * 255
    assert torch.equal(out.round()[0, 0, 0], torch.tensor([0.0, 0.0, 128.0, 255.0]))


# ---- colour spaces and whitening -------------------------------------------------------------------------------
def test_yuv_fixed_point_hand_worked_and_gray_round_trips():
    red = torch.tensor([255.0, 0.0, 0.0]).view(1, 3, 1, 1)
    # Y = (255*4899 + 2^13) >> 14 = 76; U = (-76*8061 + 128*2^14 + 2^13) >> 14 = 91; V = 285 saturated to 255
    assert _color.rgb_to_yuv(red).flatten().tolist() == [76.0, 91.0, 255.0]
    gray = torch.arange(256.0).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    yuv = _color.rgb_to_yuv(gray)
    assert torch.equal(yuv[:, 0], gray[:, 0]) and (yuv[:, 1:] == 128).all()
    assert torch.equal(_color.yuv_to_rgb(yuv), gray)


def test_lab_known_values_and_round_trip():
    px = torch.tensor([[255.0, 255, 255], [0, 0, 0], [255, 0, 0]]).t().reshape(1, 3, 1, 3)
    lab = _color.rgb_to_lab(px)[0, :, 0].t().tolist()
    assert lab == [[255.0, 128.0, 128.0], [0.0, 128.0, 128.0], [136.0, 208.0, 195.0]]  # red: L 53.2, a 80.1, b 67.2
    rgb = torch.randint(0, 256, (4, 3, 8, 8), generator=gen(2)).float()
    back = _color.lab_to_rgb(_color.rgb_to_lab(rgb))
    assert (back - rgb).abs().mean() < 1.5  # 8-bit Lab is lossy, by a few levels at most on average


def test_yuv_whitening_of_a_gray_image_zeroes_its_flat_chroma():
    """DUNE's rule for a flat channel: its min-max range is empty, so it becomes 0 (not 128)."""
    g = torch.randint(0, 256, (1, 1, 8, 8), generator=gen(4)).float().expand(1, 3, 8, 8) / 255
    out = run("yuv-whiten", g) * 255
    y = g[0, 0].numpy() * np.float32(255)
    z = (y - y.mean()) / y.std()  # DUNE's two float32 steps: standardise, then stretch, then astype(np.uint8)
    y_stretched = np.clip((z - z.min()) / (z.max() - z.min()) * np.float32(255), 0, 255).astype(np.uint8)
    y_stretched = torch.from_numpy(y_stretched.astype(np.float32))[None, None]
    expect = _color.yuv_to_rgb(
        torch.cat([y_stretched, torch.zeros_like(y_stretched), torch.zeros_like(y_stretched)], 1)
    )
    assert torch.equal(out.round(), expect)


def test_whitening_spans_the_full_range_of_each_channel_of_the_colour_space():
    out = run("yuv-whiten", u8_batch(3, seed=8))
    yuv = _color.rgb_to_yuv(_color.levels(out))
    assert (yuv.amax(dim=(2, 3)) - yuv.amin(dim=(2, 3)) > 200).all()


# ---- colour shift with noise -----------------------------------------------------------------------------------
def test_color_shift_offsets_are_per_channel_within_the_bound():
    x = u8_batch(8, seed=6) * 0.8 + 0.1  # away from the clip
    out = run("color-shift", x, std=0.0)
    d = out - x
    per = d.flatten(2)
    assert torch.allclose(per, per[:, :, :1].expand_as(per), atol=1e-6)  # one offset per image and channel
    assert per.abs().max() <= 8 / 255 + 1e-6 and per[:, :, 0].std() > 1 / 255
    assert torch.equal(run("color-shift", x, shift=0.0, std=0.0), x)
    noisy = run("color-shift", x, shift=0.0) - x
    assert noisy.std() > 0.5 / 255 and noisy.flatten(1).std(1).max() <= 8 / 255 * 1.2
