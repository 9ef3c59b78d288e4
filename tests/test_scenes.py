"""The procedural `scenes` dataset: determinism, shapes, consistent dense targets, and a calibrated difficulty."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uebench import data
from uebench.core.errors import UserError
from uebench.data import scenes
from uebench.data.registry import DATASETS

N_SMALL = 600


@pytest.fixture(scope="module")
def small() -> data.ImageDataset:
    return data.load("scenes", split="train", n_train=N_SMALL, difficulty="standard")


def _pair(difficulty: str) -> tuple[data.ImageDataset, data.ImageDataset]:
    """2,000 train and 1,000 test images for the cheap difficulty checks."""
    return (
        data.load("scenes", split="train", n_train=2000, difficulty=difficulty),
        data.load("scenes", split="test", n_test=1000, difficulty=difficulty),
    )


@pytest.fixture(scope="module", params=["standard", "hard", "natural"])
def pair(request) -> tuple[data.ImageDataset, data.ImageDataset]:
    return _pair(request.param)


def _same(a: data.ImageDataset, b: data.ImageDataset) -> bool:
    return (
        torch.equal(a.images, b.images)
        and torch.equal(a.labels, b.labels)
        and all(torch.equal(a.targets[k], b.targets[k]) for k in a.targets)
    )


# ---------- registry, options, determinism ----------


def test_registered_without_files():
    info = DATASETS.get("scenes")
    assert info.needs_files is False
    assert data.DEFAULT_DATASET == "scenes"


def test_deterministic_and_seeded(small):
    again = data.load("scenes", split="train", n_train=N_SMALL, difficulty="standard")
    assert _same(small, again)
    other = data.load("scenes", split="train", n_train=N_SMALL, seed=1, difficulty="standard")
    assert not torch.equal(small.images, other.images)
    assert (small.images != other.images).float().mean() > 0.5


def test_train_and_test_are_disjoint_streams(small):
    test = data.load("scenes", split="test", n_test=N_SMALL, difficulty="standard")
    assert not torch.equal(small.images, test.images)
    # no test image is a copy of a train image
    a = small.images.flatten(1).to(torch.int16)
    b = test.images.flatten(1).to(torch.int16)
    assert all(not (a == row).all(1).any() for row in b[:50])


def test_prefix_stable(small):
    part = data.load("scenes", split="train", n_train=300, difficulty="standard")
    assert _same(part, small.subset(torch.arange(300)))


def test_shapes_and_dtypes(small):
    n = N_SMALL
    assert small.images.shape == (n, 3, 32, 32) and small.images.dtype == torch.uint8
    assert small.labels.shape == (n,) and small.labels.dtype == torch.int64
    assert set(small.targets) == {"segment", "depth", "edges", "keypoints"}
    dtypes = {"segment": torch.int64, "depth": torch.float32, "edges": torch.uint8, "keypoints": torch.uint8}
    for k, dt in dtypes.items():
        assert small.targets[k].shape == (n, 32, 32), k
        assert small.targets[k].dtype == dt, k
    assert set(small.targets["edges"].unique().tolist()) == {0, 1}
    assert set(small.targets["keypoints"].unique().tolist()) == {0, 1}
    seg = small.targets["segment"]
    assert seg.min() == 0 and seg.max() <= len(scenes.SEGMENT_CLASSES) - 1
    assert small.images.float().std() > 30  # real content, not a flat image


def test_classes_readable_and_balanced(small):
    assert small.classes == scenes.class_names(10)
    assert len(set(small.classes)) == 10
    assert all(isinstance(c, str) and c.replace("+", "").isalpha() for c in small.classes)
    counts = torch.bincount(small.labels, minlength=10)
    assert counts.min() >= 0.7 * N_SMALL / 10 and counts.max() <= 1.3 * N_SMALL / 10


def test_other_options():
    big = data.load("scenes", split="test", size=64, n_test=40, num_classes=5, seed=3, difficulty="standard")
    assert big.images.shape == (40, 3, 64, 64)
    assert all(t.shape == (40, 64, 64) for t in big.targets.values())
    assert big.num_classes == 5
    _check_targets(big)
    many = data.load("scenes", split="train", n_train=100, num_classes=30, difficulty="standard")
    assert many.num_classes == 30 and many.labels.max() <= 29
    _check_targets(many)
    with pytest.raises(UserError):
        data.load("scenes", num_classes=1)
    with pytest.raises(UserError):
        data.load("scenes", num_classes=scenes.MAX_CLASSES + 1)
    with pytest.raises(UserError):
        data.load("scenes", size=8)
    for bad in ({"n_test": 0}, {"n_train": 0}, {"size": "abc"}, {"n_train": 2.5}, {"nope": 1}, {"seed": -1}):
        with pytest.raises(UserError):
            data.load("scenes", split="test", **bad)


# ---------- dense targets agree with each other and with the label ----------


def _neighbour_farther(depth: torch.Tensor) -> torch.Tensor:
    e = torch.zeros_like(depth, dtype=torch.bool)
    e[:, 1:, :] |= depth[:, :-1, :] > depth[:, 1:, :]
    e[:, :-1, :] |= depth[:, 1:, :] > depth[:, :-1, :]
    e[:, :, 1:] |= depth[:, :, :-1] > depth[:, :, 1:]
    e[:, :, :-1] |= depth[:, :, 1:] > depth[:, :, :-1]
    return e


def _check_targets(ds: data.ImageDataset) -> None:
    seg, depth = ds.targets["segment"], ds.targets["depth"]
    edges, kp = ds.targets["edges"].bool(), ds.targets["keypoints"].bool()
    obj = seg > 0
    # background is the farthest layer, at exactly 1; objects are nearer
    assert torch.all(depth[~obj] == 1.0)
    assert torch.all((depth[obj] > 0) & (depth[obj] < 1))
    assert depth.max() <= 1.0
    # edges: object pixels on the occluding side of a depth discontinuity (exactly)
    assert not (edges & ~obj).any()
    assert torch.equal(edges, _neighbour_farther(depth))
    # every change of segment class is next to an edge pixel
    dv = seg[:, 1:, :] != seg[:, :-1, :]
    assert torch.all(edges[:, 1:, :][dv] | edges[:, :-1, :][dv])
    dh = seg[:, :, 1:] != seg[:, :, :-1]
    assert torch.all(edges[:, :, 1:][dh] | edges[:, :, :-1][dh])
    # keypoints lie on visible object pixels, and most images have some
    assert not (kp & ~obj).any()
    assert (kp.flatten(1).any(1)).float().mean() > 0.9
    # the label is the set of key shapes visible in the segmentation
    sets = scenes.class_sets(ds.num_classes)
    n_key = max(max(s) for s in sets) + 1
    for i in range(len(ds)):
        present = {int(v) - 1 for v in seg[i].unique() if 1 <= v <= n_key}
        assert present == set(sets[int(ds.labels[i])]), i


def test_targets_consistent(small):
    _check_targets(small)


def test_layers_occlude(small):
    """Scenes have several objects, and some overlap: a real layer order, not a flat arrangement."""
    depth = small.targets["depth"]
    layers = torch.tensor([len(d.unique()) - 1 for d in depth])  # distinct object depths visible
    assert layers.min() >= 2 and layers.float().mean() >= 2.2  # two key objects, a duplicate in about a third
    # overlap: some object boundary pixel has a nearer neighbour that is also an object (object-object edge)
    seg = small.targets["segment"]
    inner = (seg[:, 1:, :] > 0) & (seg[:, :-1, :] > 0) & (depth[:, 1:, :] != depth[:, :-1, :])
    assert inner.flatten(1).any(1).float().mean() > 0.2


# ---------- difficulty: neither pixels nor colour give the class, at either difficulty ----------


def _pixels(ds: data.ImageDataset) -> torch.Tensor:
    return ds.images.flatten(1).float() / 255


def _fit_and_score(
    make_model,
    x: torch.Tensor,
    xt: torch.Tensor,
    train: data.ImageDataset,
    test: data.ImageDataset,
    lr: float,
    weight_decay: float = 0.0,
) -> tuple[float, float]:
    """Standardise the features, fit with 300 full-batch Adam steps (seed 0), return train and test accuracy."""
    mu, sd = x.mean(0), x.std(0) + 1e-3
    x, xt = (x - mu) / sd, (xt - mu) / sd
    torch.manual_seed(0)
    model = make_model(x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(300):
        loss = F.cross_entropy(model(x), train.labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        fit = (model(x).argmax(1) == train.labels).float().mean().item()
        return fit, (model(xt).argmax(1) == test.labels).float().mean().item()


def test_linear_model_on_pixels_is_weak(pair):
    train, test = pair
    fit, acc = _fit_and_score(
        lambda d: torch.nn.Linear(d, 10), _pixels(train), _pixels(test), train, test, lr=1e-3, weight_decay=1e-4
    )
    assert fit > 0.5  # it did fit the training set ...
    assert acc < 0.3  # ... but that does not transfer: chance is 0.1, a CNN passes 0.8


def test_nearest_class_mean_is_near_chance(pair):
    train, test = pair
    x, xt = _pixels(train), _pixels(test)
    means = torch.stack([x[train.labels == c].mean(0) for c in range(10)])
    acc = (torch.cdist(xt, means).argmin(1) == test.labels).float().mean().item()
    assert acc < 0.25


def _colour_mlp_accuracy(train: data.ImageDataset, test: data.ImageDataset) -> float:
    def feats(ds):
        x = ds.images.float() / 255
        return torch.cat([x.mean((2, 3)), x.std((2, 3)), x.amax((2, 3)), x.amin((2, 3))], 1)

    def mlp(d: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Linear(d, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

    return _fit_and_score(mlp, feats(train), feats(test), train, test, lr=3e-3)[1]


def test_colour_statistics_are_weak(pair):
    """Per-channel means, std, max and min of an image (global colour) do not give the class: only shapes do."""
    assert _colour_mlp_accuracy(*pair) < 0.3


def test_natural_is_a_seeded_per_image_mixture():
    """`natural` takes each image, with its label and every dense target, from `textured` (70%) or `hard` (30%) at
    the same position; the choice is seeded, and so prefix-stable and deterministic."""
    kw = dict(split="train", n_train=600)
    mixed, easy, hard = (data.load("scenes", difficulty=d, **kw) for d in ("natural", "textured", "hard"))
    assert torch.equal(mixed.labels, easy.labels) and torch.equal(mixed.labels, hard.labels)
    from_easy = (mixed.images == easy.images).flatten(1).all(1)
    from_hard = (mixed.images == hard.images).flatten(1).all(1)
    assert bool((from_easy ^ from_hard).all())  # every image is exactly one part's
    assert 0.62 < from_easy.float().mean().item() < 0.78
    for k in mixed.targets:
        assert torch.equal(mixed.targets[k][from_easy], easy.targets[k][from_easy])
        assert torch.equal(mixed.targets[k][from_hard], hard.targets[k][from_hard])
    assert _same(mixed, data.load("scenes", difficulty="natural", **kw))
    assert _same(mixed.subset(torch.arange(300)), data.load("scenes", split="train", n_train=300, difficulty="natural"))
    assert mixed.meta["generator"] == "scenes-v3-natural"


def test_the_default_is_natural_and_a_record_without_a_difficulty_means_standard():
    """A first run learns poisons on the default (`natural`); `standard`, the default before 0.2.0, is what a record
    of scenes options without a difficulty was made with: written out unless `standard`, read back as such."""
    ds = data.load("scenes", split="train", n_train=8, n_test=4)
    assert (
        ds.meta["difficulty"] == scenes.DEFAULT_DIFFICULTY == "natural"
        and ds.meta["options"]["difficulty"] == "natural"
    )
    assert _same(ds, data.load("scenes", split="train", n_train=8, difficulty="natural"))
    assert data.DEFAULTS_BEFORE["scenes"] == {"difficulty": "standard"}
    sized = {"n_train": 8, "n_test": 4}
    assert data.recorded_options("scenes", sized) == {**sized, "difficulty": "natural"}  # today's default, written
    assert data.recorded_options("scenes", {**sized, "difficulty": "standard"}) == sized  # as a record made before
    assert data.recorded_options("scenes", {"difficulty": "hard"}) == {"difficulty": "hard"}
    assert data.options_from_record("scenes", sized) == {**sized, "difficulty": "standard"}
    assert data.options_from_record("scenes", {"difficulty": "natural"}) == {"difficulty": "natural"}
    for options in (sized, {"difficulty": "natural"}, {"difficulty": "textured", "seed": 2}):
        assert data.recorded_options("scenes", data.options_from_record("scenes", options)) == options
    assert data.recorded_options("cifar10", {}) == {} and data.options_from_record("cifar10", {}) == {}


def test_unknown_difficulty_refused():
    with pytest.raises(UserError, match="difficulty"):
        data.load("scenes", split="train", n_train=8, difficulty="extreme")


# ---------- the calibration a CNN must meet (slow) ----------


@pytest.mark.slow
def test_cnn_calibration():
    """ResNet-18 (width 0.25), SGD 0.1/0.9/5e-4, batch 128, crop+flip, 5,000 train / 1,000 test `standard` images:
    below 80% test accuracy after one epoch, 80% or more within 15 epochs (measured: 11%, 41%, 91% at epoch 3)."""
    from uebench.data.augment import crop_flip, to_float
    from uebench.models import create_model

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    train, test = (data.load("scenes", split=split, difficulty="standard") for split in ("train", "test"))
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = create_model("resnet18", num_classes=10, width=0.25).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    xt = to_float(test.images).contiguous(memory_format=torch.channels_last)
    curve = []
    for _ in range(15):
        model.train()
        perm = torch.randperm(len(train), generator=g)
        for i in range(0, len(train), 128):
            idx = perm[i : i + 128]
            x = crop_flip(to_float(train.images[idx]), g).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xt[j : j + 500]).argmax(1) for j in range(0, len(xt), 500)])
        curve.append((pred == test.labels).float().mean().item())
        print(f"epoch {len(curve)}: test accuracy {curve[-1]:.3f}", flush=True)
        if curve[-1] >= 0.8:
            break
    assert curve[0] < 0.8, curve
    assert max(curve) >= 0.8, curve
