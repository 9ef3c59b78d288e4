"""`scenes`: a procedural multi-task image dataset, generated from a seed in seconds (no files needed).

The embedded default dataset of uebench: used when there is no data on disk, by the README's main job and by
the tests. Every image is an RGB scene (uint8, `size` x `size`, 32 by default) made of a textured background
(gradient, stripes, checkerboard or smooth blotches in two random colours) and 2 to 5 flat objects drawn back to
front, so they occlude each other and there is a true layer order. Objects have random colour, position, scale,
rotation and a stripe or shading texture; Gaussian pixel noise is added at the end.

Scene class (the label)
    The class is the *set of key shapes* present. With `num_classes` = 10 the key shapes are disc, square,
    triangle, ring and cross, and each class is one unordered pair of them ("disc+square", ..., "ring+cross"):
    an image of class "disc+triangle" holds at least one disc and at least one triangle (sometimes a second copy
    of one of them) and no other key shape. Distractors (thin bars, and the shapes of the vocabulary that are no
    key shape at this `num_classes`: frame, half-disc) may be added; they carry no class information. Colours,
    positions, scales, rotations, textures and backgrounds are nuisance, so the class is a visual property a CNN
    has to learn (a linear model on raw pixels stays near chance); key objects keep at least 60% of their area
    visible, so the label is always readable from the image. Up to 21 classes are pairs of the 7 key shapes
    (disc, square, triangle, ring, cross, frame, half-disc), taken in colex order so that the first C(s, 2)
    classes use only the first s shapes; 22 to 56 classes add triples.

Dense targets (`ImageDataset.targets`, first dimension N, then H, W)
    "segment"   int64   semantic class of each visible pixel: 0 = background, 1..8 = object shape
                        (see `SEGMENT_CLASSES`: disc, square, triangle, ring, cross, frame, halfdisc, bar).
    "depth"     float32 depth of the visible surface, in (0, 1]: the background is at 1.0 (farthest), each
                        object has its own constant depth in [0.05, 0.95]; objects are drawn in order of
                        decreasing depth, so a nearer object always occludes a farther one.
    "edges"     uint8   {0, 1} object boundaries, one pixel thick on the occluding side: pixel p is an edge
                        when some 4-neighbour q (inside the image) is farther, depth[q] > depth[p]. Edges are
                        therefore always object pixels, and every change of segment lies next to an edge.
    "keypoints" uint8   {0, 1} visible keypoints: corners of square/triangle/frame, the ends of bars and
                        cross arms, the corners and top of a half-disc, four points on a ring and the centre
                        of disc, square, triangle and cross; each is snapped slightly inside its object and
                        kept only where that object is visible, so keypoints always lie on object pixels.

Difficulty (`difficulty=`, see `Style`): `standard` draws the key shapes large, upright and flat on dark
backgrounds, without distractors: colour carries no class information (a colour-statistics MLP scores 14%, chance is
10%), and a width-0.25 ResNet-18 needs a few epochs to read the shapes (11%, 41%, then 91% at epoch 3 of 5,000
images, SGD 0.1). `hard` (the first generator, scenes-v1 byte for byte) draws them small, rotated and textured on
backgrounds of any brightness among distractor shapes; the same model stays at chance for 7+ epochs. `textured` is
`standard` with the shapes rotated and textured. `natural` (the default, and the quick bench's) takes each image from
`textured` (70%) or `hard` (30%): the quick victim's clean test accuracy then climbs gradually, as on natural images,
instead of in one step (benchmarks/scenes_calibration.py; measured against 2,000 CIFAR-10 images, 2 seeds: largest
gap 12.2 points at any epoch, 48.6% against 39.8% at epoch 10, where `standard` reaches 95%); EM's poison is learned
there, where on `standard` no poison is (docs/results/benchmark.md). `standard` was the default before 0.2.0: a
record of scenes options without a difficulty (a run's config.json, a bench's identity) means `standard`
(uebench.data.DEFAULTS_BEFORE).

Options (keyword arguments of the loader): size=32, n_train=5000, n_test=1000, num_classes=10, seed=0,
difficulty="natural" (natural | standard | textured | hard).
Train and test come from disjoint seed streams of the same generator (i.i.d.), generation is deterministic
(same options -> identical bytes, on any machine: numpy's PCG64 and float32 element-wise arithmetic only) and
prefix-stable (the first n images of a split do not depend on n_train / n_test).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Annotated

import numpy as np
import torch

from ..core.errors import UserError
from ..core.options import MAX_IMAGES, Count, check_memory
from .base import ImageDataset
from .registry import register_dataset

SEGMENT_CLASSES = ("background", "disc", "square", "triangle", "ring", "cross", "frame", "halfdisc", "bar")
KEY_SHAPES = SEGMENT_CLASSES[1:8]  # shapes that can define a class (segment ids 1..7)
BAR = 8  # segment id of the bar, always a distractor
MAX_CLASSES = 21 + 35  # pairs then triples of the 7 key shapes

_CHUNK = 256  # images generated per seed sub-stream (prefix stability)
_TEX_AMP = (0.15, 0.45)
_MIN_VISIBLE = 0.6  # fraction of each key object's area that must stay visible


@dataclass(frozen=True)
class Style:
    """What makes the class hard to read (the colours never carry it). `hard` (scenes-v1): small rotated textured key
    shapes with distractor shapes, on backgrounds as bright as the objects; a width-0.25 ResNet-18 stays at chance
    for 7+ epochs of 5,000 images. `standard`: large upright flat key shapes, no distractors, bright objects on dark
    backgrounds; the same model passes 80% at epoch 3 (tests/test_scenes.py's calibration test). Measured on the way
    there: without the dark backgrounds the large upright shapes alone reach only 65% in 15 epochs; the figure
    standing out from the ground is what makes the shapes learnable at CPU scale."""

    max_distractors: int = 2
    key_r: tuple[float, float] = (0.2, 0.34)  # radius range of shapes, in half-widths of the image
    shape_distractors: bool = True  # non-key shapes of the vocabulary may appear as distractors (besides bars)
    angle: float = 2 * np.pi  # objects are rotated uniformly in [0, angle)
    tex_types: int = 3  # object textures drawn from the first tex_types of: flat, stripes, shading
    dark_background: bool = False  # dark backgrounds and bright objects (figure stands out from ground)
    bg_contrast: float = 0.35  # largest per-channel difference between the background's two colours
    noise: float = 0.03  # std of the Gaussian pixel noise, in [0, 1] units
    generator: str = "scenes-v1"  # recorded in the dataset's meta


STYLES = {
    "standard": Style(
        max_distractors=0,
        key_r=(0.3, 0.45),
        shape_distractors=False,
        angle=0.0,
        tex_types=1,
        dark_background=True,
        generator="scenes-v2",
    ),
    "hard": Style(),
    # standard's large shapes, rotated and textured: the easy part of `natural`
    "textured": Style(
        max_distractors=0,
        key_r=(0.3, 0.45),
        shape_distractors=False,
        tex_types=3,
        dark_background=True,
        generator="scenes-v3-textured",
    ),
}


@dataclass(frozen=True)
class Mixture:
    """Each image drawn at one of several difficulties, with these probabilities (per image, from its own seed
    stream). Natural images are a mixture too: some are read at a glance, some are hard for any small model, and
    a victim's accuracy climbs gradually instead of in one step."""

    parts: tuple[tuple[str, float], ...]
    generator: str


MIXTURES = {
    # calibrated against CIFAR-10 (benchmarks/scenes_calibration.py): the quick victim's clean test accuracy follows
    # its curve on the same number of CIFAR-10 images, where standard is learned to 95% and hard stays at chance
    "natural": Mixture((("textured", 0.7), ("hard", 0.3)), "scenes-v3-natural"),
}
DEFAULT_DIFFICULTY = "natural"  # where the quick victim learns the poisons (before 0.2.0: standard)
_STREAM_TAG = 0x5CE7E5  # separates this generator's seed streams from any other use of the same seed


def class_sets(num_classes: int) -> list[tuple[int, ...]]:
    """Key-shape sets (0-based indices into KEY_SHAPES) of classes 0..num_classes-1 (pairs, then triples, colex)."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise UserError(f"scenes: num_classes must be between 2 and {MAX_CLASSES}, got {num_classes}")
    sets: list[tuple[int, ...]] = []
    for k in (2, 3):
        combos = sorted(combinations(range(len(KEY_SHAPES)), k), key=lambda c: c[::-1])  # colex
        sets.extend(combos)
    return sets[:num_classes]


def class_names(num_classes: int) -> list[str]:
    return ["+".join(KEY_SHAPES[i] for i in s) for s in class_sets(num_classes)]


# ----------------------------------------------------------------------------------------------- parameters


def _sample_colours(
    rng: np.random.Generator, n: int, avoid: np.ndarray, min_dist: float = 0.5, tries: int = 6
) -> np.ndarray:
    """n RGB colours in [0,1], resampled (a few times) when within L1 `min_dist` of `avoid` (n, 3)."""
    col = rng.random((n, 3), dtype=np.float32)
    for _ in range(tries):
        bad = np.abs(col - avoid).sum(1) < min_dist
        cand = rng.random((n, 3), dtype=np.float32)
        col = np.where(bad[:, None], cand, col)
    return col


def _sample_scenes(
    rng: np.random.Generator, labels: np.ndarray, sets: np.ndarray, n_key_shapes: int, st: Style
) -> dict:
    """Parameters of len(labels) scenes. Object slots: k key objects, 1 optional duplicate, then distractors."""
    n = len(labels)
    k = sets.shape[1]
    m = k + 1 + st.max_distractors
    p: dict[str, np.ndarray] = {}
    # background: type 0 gradient, 1 stripes, 2 checker, 3 blotches
    p["bg_type"] = rng.integers(0, 4, n)
    c1 = rng.random((n, 3), dtype=np.float32)
    rng.random(n)  # drawn and unused: keeps every later draw, and so scenes-v1 (hard), byte for byte
    if st.dark_background:
        c1 = 0.4 * c1
    c2 = np.clip(c1 + rng.uniform(-st.bg_contrast, st.bg_contrast, (n, 3)).astype(np.float32), 0, 1)
    p["bg_c1"], p["bg_c2"] = c1, c2
    p["bg_angle"] = rng.uniform(0, np.pi, n).astype(np.float32)
    p["bg_freq"] = rng.uniform(3, 10, n).astype(np.float32)
    p["bg_phase"] = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    p["bg_blot"] = rng.random((n, 5, 5), dtype=np.float32)
    # object slots
    shape = np.full((n, m), -1, dtype=np.int64)  # segment id 1..8, -1 = empty slot
    shape[:, :k] = sets[labels] + 1
    dup = rng.random(n) < 0.35
    shape[:, k] = np.where(dup, shape[np.arange(n), rng.integers(0, k, n)], -1)
    extra = [i + 1 for i in range(n_key_shapes, len(KEY_SHAPES))] if st.shape_distractors else []
    pool = np.array(extra + [BAR] * max(2, len(extra)), dtype=np.int64)
    n_dis = rng.integers(0, st.max_distractors + 1, n)
    dis = pool[rng.integers(0, len(pool), (n, st.max_distractors))]
    shape[:, k + 1 :] = np.where(np.arange(st.max_distractors)[None] < n_dis[:, None], dis, -1)
    p["shape"] = shape
    p["key"] = np.zeros((n, m), dtype=bool)
    p["key"][:, : k + 1] = shape[:, : k + 1] > 0
    p["cx"] = rng.uniform(-0.68, 0.68, (n, m)).astype(np.float32)
    p["cy"] = rng.uniform(-0.68, 0.68, (n, m)).astype(np.float32)
    p["r"] = rng.uniform(*st.key_r, (n, m)).astype(np.float32)
    p["bar_len"] = rng.uniform(0.45, 1.0, (n, m)).astype(np.float32)
    p["bar_w"] = rng.uniform(0.06, 0.11, (n, m)).astype(np.float32)
    p["angle"] = rng.uniform(0, st.angle, (n, m)).astype(np.float32)
    p["depth"] = rng.uniform(0.05, 0.95, (n, m)).astype(np.float32)
    bg_mean = (c1 + c2) / 2
    p["colour"] = np.stack([_sample_colours(rng, n, bg_mean) for _ in range(m)], 1)
    if st.dark_background:
        col = p["colour"] / np.maximum(p["colour"].max(-1, keepdims=True), 1e-3)
        p["colour"] = (0.55 + 0.45 * col).astype(np.float32)
    p["tex_type"] = rng.integers(0, st.tex_types, (n, m))  # 0 flat, 1 stripes, 2 shading
    p["tex_amp"] = rng.uniform(*_TEX_AMP, (n, m)).astype(np.float32)
    p["tex_freq"] = rng.uniform(8, 16, (n, m)).astype(np.float32)
    p["tex_dir"] = rng.uniform(0, 2 * np.pi, (n, m)).astype(np.float32)
    # draw order: back to front (decreasing depth); empty slots go last and are skipped
    order = np.argsort(np.where(shape > 0, -p["depth"], np.inf), axis=1, kind="stable")
    for key in (
        "shape",
        "key",
        "cx",
        "cy",
        "r",
        "bar_len",
        "bar_w",
        "angle",
        "depth",
        "colour",
        "tex_type",
        "tex_amp",
        "tex_freq",
        "tex_dir",
    ):
        p[key] = np.take_along_axis(p[key], order if p[key].ndim == 2 else order[..., None], axis=1)
    return p


def _merge(p: dict, q: dict, idx: np.ndarray) -> None:
    for key, v in q.items():
        p[key][idx] = v


# ----------------------------------------------------------------------------------------------- rendering


def _shape_mask(s: int, u: np.ndarray, v: np.ndarray, r: np.ndarray, bl: np.ndarray, bw: np.ndarray) -> np.ndarray:
    """Inside-test of segment id s in the object frame (u right, v down); r, bl, bw broadcast as (n, 1, 1)."""
    au, av = np.abs(u), np.abs(v)
    if s == 1:  # disc
        return u * u + v * v <= r * r
    if s == 2:  # square
        return np.maximum(au, av) <= 0.82 * r
    if s == 3:  # equilateral triangle, circumradius 1.15 r, apex up
        R = 1.15 * r
        inside = v <= 0.5 * R
        for a in (np.pi / 6 + np.pi, -np.pi / 6):  # the two slanted edges' outward normals
            inside &= u * np.cos(a) + v * np.sin(a) <= 0.5 * R
        return inside
    if s == 4:  # ring
        d = u * u + v * v
        return (d <= r * r) & (d >= (0.55 * r) ** 2)
    if s == 5:  # cross (plus sign)
        return ((au <= 0.3 * r) & (av <= r)) | ((av <= 0.3 * r) & (au <= r))
    if s == 6:  # frame: hollow square
        mx = np.maximum(au, av)
        return (mx <= 0.85 * r) & (mx >= 0.5 * r)
    if s == 7:  # half-disc, flat side down
        return (u * u + (v - 0.35 * r) ** 2 <= (1.2 * r) ** 2) & (v <= 0.35 * r)
    if s == 8:  # bar
        return (au <= bl) & (av <= bw)
    raise ValueError(s)


def _keypoints_local(s: int) -> list[tuple[float, float, float]]:
    """Keypoints of shape s in units of r (bars: of bar_len), each with how many pixels it is pulled toward the
    centre so that its pixel falls inside the rasterised shape (corners most, points inside a ring band not at all)."""
    c = [(0.0, 0.0, 0.0)]
    if s == 1:
        return c
    if s == 2:
        return c + [(x * 0.82, y * 0.82, 1.6) for x in (-1, 1) for y in (-1, 1)]
    if s == 3:
        R = 1.15
        return c + [(0.0, -R, 2.2), (R * np.cos(np.pi / 6), R / 2, 2.2), (-R * np.cos(np.pi / 6), R / 2, 2.2)]
    if s == 4:
        return [(0.78, 0, 0.0), (-0.78, 0, 0.0), (0, 0.78, 0.0), (0, -0.78, 0.0)]
    if s == 5:
        return c + [(1, 0, 0.8), (-1, 0, 0.8), (0, 1, 0.8), (0, -1, 0.8)]
    if s == 6:
        return [(x * 0.85, y * 0.85, 1.0) for x in (-1, 1) for y in (-1, 1)]
    if s == 7:
        return [(1.2, 0.35, 1.6), (-1.2, 0.35, 1.6), (0, -0.85, 0.8)]
    if s == 8:
        return [(1, 0, 0.8), (-1, 0, 0.8)]
    raise ValueError(s)


@lru_cache(maxsize=8)
def _upsample_matrix(size: int, low: int = 5) -> np.ndarray:
    """(size, low) bilinear interpolation weights (align_corners=True) from a low x low grid."""
    pos = np.linspace(0, low - 1, size)
    i0 = np.clip(np.floor(pos).astype(int), 0, low - 2)
    w = pos - i0
    mat = np.zeros((size, low), dtype=np.float32)
    mat[np.arange(size), i0] = 1 - w
    mat[np.arange(size), i0 + 1] = w
    return mat


def _render(p: dict, size: int) -> dict:
    n, m = p["shape"].shape
    g = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1).astype(np.float32)
    X = g[None, None, :]  # (1, 1, W)
    Y = g[None, :, None]  # (1, H, 1)
    f = lambda a: a[:, None, None]  # noqa: E731  (n,) -> (n, 1, 1)

    # background
    ca, sa = np.cos(p["bg_angle"]), np.sin(p["bg_angle"])
    proj = f(ca) * X + f(sa) * Y
    t = np.empty((n, size, size), dtype=np.float32)
    bt = p["bg_type"]
    grad = (proj + 1.4) / 2.8
    stripes = 0.5 + 0.5 * np.sin(f(p["bg_freq"]) * proj + f(p["bg_phase"]))
    proj2 = -f(sa) * X + f(ca) * Y
    checker = (np.sin(f(p["bg_freq"]) * proj + f(p["bg_phase"])) * np.sin(f(p["bg_freq"]) * proj2) > 0).astype(
        np.float32
    )
    up = _upsample_matrix(size)
    blot = np.einsum("hi,nij,wj->nhw", up, p["bg_blot"], up, optimize=True)
    for i, tex in enumerate((grad, stripes, checker, blot)):
        sel = bt == i
        t[sel] = tex[sel]
    c1, c2 = p["bg_c1"], p["bg_c2"]
    img = c1[:, :, None, None] + (c2 - c1)[:, :, None, None] * t[:, None]  # (n, 3, H, W)

    seg = np.zeros((n, size, size), dtype=np.int64)
    depth = np.ones((n, size, size), dtype=np.float32)
    inst = np.full((n, size, size), -1, dtype=np.int64)
    area = np.zeros((n, m), dtype=np.int64)
    step = 2.0 / size
    kp = np.zeros((n, size, size), dtype=bool)
    kp_cand: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []  # (image idx, slot, row, col)
    for j in range(m):
        shp = p["shape"][:, j]
        cos, sin = np.cos(p["angle"][:, j]), np.sin(p["angle"][:, j])
        dx = X - f(p["cx"][:, j])
        dy = Y - f(p["cy"][:, j])
        u = f(cos) * dx + f(sin) * dy
        v = -f(sin) * dx + f(cos) * dy
        mask = np.zeros((n, size, size), dtype=bool)
        for s in np.unique(shp[shp > 0]):
            idx = np.nonzero(shp == s)[0]
            r, bl, bw = (f(p[k][idx, j]) for k in ("r", "bar_len", "bar_w"))
            mask[idx] = _shape_mask(int(s), u[idx], v[idx], r, bl, bw)
            # keypoint candidates: local point -> image pixel, pulled toward the object's centre
            scale = p["bar_len"][idx, j] if s == BAR else p["r"][idx, j]
            for ku, kv, pull_px in _keypoints_local(int(s)):
                lu, lv = ku * scale, kv * scale
                norm = np.hypot(lu, lv)
                pull = np.where(norm > 0, np.minimum(pull_px * step, norm) / np.maximum(norm, 1e-9), 0)
                lu, lv = lu * (1 - pull), lv * (1 - pull)
                px = p["cx"][idx, j] + cos[idx] * lu - sin[idx] * lv
                py = p["cy"][idx, j] + sin[idx] * lu + cos[idx] * lv
                col = np.floor((px + 1) / step).astype(np.int64)
                row = np.floor((py + 1) / step).astype(np.int64)
                ok = (col >= 0) & (col < size) & (row >= 0) & (row < size)
                kp_cand.append((idx[ok], j, row[ok], col[ok]))
        area[:, j] = mask.sum((1, 2))
        # object colour with texture
        tdx, tdy = np.cos(p["tex_dir"][:, j]), np.sin(p["tex_dir"][:, j])
        along = (f(tdx) * u + f(tdy) * v) / f(p["r"][:, j])
        tt = p["tex_type"][:, j]
        mod = np.where(
            f(tt == 1),
            0.5 * np.sin(f(p["tex_freq"][:, j]) * along * f(p["r"][:, j])),
            np.where(f(tt == 2), np.clip(along, -1, 1) * 0.5, 0.0),
        ).astype(np.float32)
        obj = p["colour"][:, j, :, None, None] * (1 + f(p["tex_amp"][:, j])[:, None] * mod[:, None])
        img = np.where(mask[:, None], obj, img)
        seg = np.where(mask, shp[:, None, None], seg)
        depth = np.where(mask, f(p["depth"][:, j]), depth)
        inst = np.where(mask, j, inst)
    for idx, j, row, col in kp_cand:  # keep keypoints where their object is visible
        vis = inst[idx, row, col] == j
        kp[idx[vis], row[vis], col[vis]] = True
    visible = np.stack([(inst == j).sum((1, 2)) for j in range(m)], 1)
    return {"img": img, "seg": seg, "depth": depth, "inst": inst, "area": area, "visible": visible, "kp": kp}


def _edges(depth: np.ndarray) -> np.ndarray:
    """Pixels with a farther 4-neighbour (the occluding side of every depth discontinuity)."""
    e = np.zeros(depth.shape, dtype=bool)
    e[:, 1:, :] |= depth[:, :-1, :] > depth[:, 1:, :]
    e[:, :-1, :] |= depth[:, 1:, :] > depth[:, :-1, :]
    e[:, :, 1:] |= depth[:, :, :-1] > depth[:, :, 1:]
    e[:, :, :-1] |= depth[:, :, 1:] > depth[:, :, :-1]
    return e


def _bad_scenes(p: dict, out: dict) -> np.ndarray:
    """Scenes where some key object is hidden below _MIN_VISIBLE of its area (or too small to see)."""
    key = p["key"]
    frac = out["visible"] / np.maximum(out["area"], 1)
    too_hidden = key & ((frac < _MIN_VISIBLE) | (out["visible"] < 4))
    return too_hidden.any(1)


def _generate_mixed(seed: int, split_id: int, chunk: int, size: int, num_classes: int, mix: Mixture) -> dict:
    # every part draws the same labels first (same seed stream), so images can be taken per position from any part
    parts = [_generate_chunk(seed, split_id, chunk, size, num_classes, STYLES[name]) for name, _ in mix.parts]
    weights = np.array([w for _, w in mix.parts], dtype=np.float64)
    pick = np.random.default_rng([_STREAM_TAG, seed, split_id, chunk, 1]).choice(
        len(parts), _CHUNK, p=weights / weights.sum()
    )
    return {k: np.choose(pick.reshape((-1,) + (1,) * (parts[0][k].ndim - 1)), [q[k] for q in parts]) for k in parts[0]}


def _generate_chunk(seed: int, split_id: int, chunk: int, size: int, num_classes: int, st: Style) -> dict:
    rng = np.random.default_rng([_STREAM_TAG, seed, split_id, chunk])
    raw = class_sets(num_classes)
    width = max(len(c) for c in raw)
    # pairs and triples mixed (more than 21 classes): pad pairs with -2, which becomes the empty slot id -1
    sets = np.array([c + (-2,) * (width - len(c)) for c in raw], dtype=np.int64)
    n_key_shapes = int(sets.max()) + 1
    labels = rng.permutation(np.arange(_CHUNK) % num_classes)
    p = _sample_scenes(rng, labels, sets, n_key_shapes, st)
    out = _render(p, size)
    for _ in range(30):  # resample the scenes whose key objects are too occluded
        bad = np.nonzero(_bad_scenes(p, out))[0]
        if len(bad) == 0:
            break
        q = _sample_scenes(rng, labels[bad], sets, n_key_shapes, st)
        _merge(p, q, bad)
        o = _render(q, size)
        for key in out:
            out[key][bad] = o[key]
    img = out["img"] + rng.normal(0, st.noise, out["img"].shape).astype(np.float32)
    images = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return {
        "images": images,
        "labels": labels.astype(np.int64),
        "segment": out["seg"],
        "depth": out["depth"].astype(np.float32),
        "edges": _edges(out["depth"]).astype(np.uint8),
        "keypoints": out["kp"].astype(np.uint8),
    }


def generate(
    n: int,
    size: int = 32,
    num_classes: int = 10,
    seed: int = 0,
    split_id: int = 0,
    difficulty: str = DEFAULT_DIFFICULTY,
) -> dict[str, np.ndarray]:
    """numpy arrays of n scenes: images (n,3,H,W) uint8, labels (n,), segment, depth, edges, keypoints (n,H,W)."""
    if n < 0:
        raise UserError(f"scenes: number of images must be >= 0, got {n}")
    if size < 16:
        raise UserError(f"scenes: size must be at least 16, got {size}")
    class_sets(num_classes)  # validates
    if difficulty not in STYLES and difficulty not in MIXTURES:
        raise UserError(f"scenes: unknown difficulty '{difficulty}'; valid: {', '.join([*STYLES, *MIXTURES])}")
    if difficulty in MIXTURES:
        chunks = [
            _generate_mixed(seed, split_id, c, size, num_classes, MIXTURES[difficulty]) for c in range(-(-n // _CHUNK))
        ]
    else:
        chunks = [
            _generate_chunk(seed, split_id, c, size, num_classes, STYLES[difficulty]) for c in range(-(-n // _CHUNK))
        ]
    keys = ("images", "labels", "segment", "depth", "edges", "keypoints")
    if not chunks:
        empty = {"images": np.zeros((0, 3, size, size), np.uint8), "labels": np.zeros(0, np.int64)}
        for k, dt in (("segment", np.int64), ("depth", np.float32), ("edges", np.uint8), ("keypoints", np.uint8)):
            empty[k] = np.zeros((0, size, size), dt)
        return empty
    return {k: np.concatenate([c[k] for c in chunks])[:n] for k in keys}


@register_dataset(
    "scenes",
    "procedural multi-task scenes (class = set of key shapes; segment/depth/edges/keypoints targets), no files needed",
    needs_files=False,
)
def load_scenes(
    root: Path | None = None,
    split: str = "train",
    *,
    size: Annotated[int, Count(512, low=16)] = 32,
    n_train: Annotated[int, Count(MAX_IMAGES)] = 5000,
    n_test: Annotated[int, Count(MAX_IMAGES)] = 1000,
    num_classes: int = 10,
    seed: int = 0,
    difficulty: str = DEFAULT_DIFFICULTY,
) -> ImageDataset:
    if split not in ("train", "test"):
        raise UserError(f"scenes: unknown split '{split}'; valid: train, test")
    size, n_train, n_test, num_classes, seed = int(size), int(n_train), int(n_test), int(num_classes), int(seed)
    if n_train < 1 or n_test < 1 or size > 512 or not 0 <= seed < 2**32:  # 0 images would give a "finished" empty run
        raise UserError(
            f"scenes: n_train and n_test must be >= 1, size at most 512, seed in [0, 2**32) (got n_train={n_train}, "
            f"n_test={n_test}, size={size}, seed={seed})"
        )
    n = n_train if split == "train" else n_test
    # per image: the uint8 image and the four targets (17 bytes a pixel), held twice while the chunks are joined
    check_memory(34 * n * size * size, f"scenes: {n:,} {split} images of {size}x{size}")
    split_id = 0 if split == "train" else 1
    d = generate(n, size, num_classes, seed, split_id, str(difficulty))
    return ImageDataset(
        "scenes",
        split,
        torch.from_numpy(d["images"]),
        torch.from_numpy(d["labels"]),
        class_names(num_classes),
        targets={k: torch.from_numpy(d[k]) for k in ("segment", "depth", "edges", "keypoints")},
        meta={
            "size": size,
            "seed": seed,
            "num_classes": num_classes,
            "difficulty": difficulty,
            "generator": (STYLES.get(difficulty) or MIXTURES[difficulty]).generator,
        },
    )
