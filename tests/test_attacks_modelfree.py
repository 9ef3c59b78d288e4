"""The model-free attacks (LSP, OPS, AR): budgets on the baked bytes, index mapping, determinism, 100 classes,
faithfulness of the vectorised searches and recursions, and efficacy on a small model."""

from __future__ import annotations

import copy
import hashlib
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from attackkit import SHARED_DATA, fit_and_test, patch_net, toy
from uebench.attacks import ATTACKS, craft
from uebench.attacks.ar import ARConfig, ar_generate, ar_noise, matching_filter, response, sample_processes
from uebench.attacks.ops import corner_colours, scores, search
from uebench.core.errors import UserError
from uebench.data.base import ImageDataset

MODEL_FREE = ["lsp", "ops", "ar"]


@pytest.fixture(scope="module")
def crafted():
    """Each attack's paper-preset poison of the default toy set, crafted once for the module."""
    ds = toy()
    return ds, {name: craft(name, ds, seed=0, progress=False) for name in MODEL_FREE}


def delta_of(poison, ds) -> torch.Tensor:
    return (poison.images.float() - ds.images[poison.indices].float()) / 255.0


def test_registered():
    for name in MODEL_FREE:
        cls = ATTACKS.get(name)
        assert cls.presets.get("fast") == {}  # model-free: fast is the paper's setting


# ---- budgets ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_FREE)
def test_budget_on_baked_bytes(name, crafted):
    ds, poisons = crafted
    p = poisons[name]
    m = p.measure(ds)
    d = delta_of(p, ds).flatten(1)
    if name == "ops":
        assert p.meta.norm == "l0" and p.meta.budget == 1
        assert m["l0"] == 1
        changed = (d.view(len(d), 3, -1) != 0).any(1).sum(1)
        assert (changed <= 1).all() and changed.float().mean() > 0.9
    else:
        budget = p.meta.budget
        expect = 1.0 if name == "ar" else math.sqrt(3072) * 6 / 255
        assert budget == pytest.approx(expect)
        assert m["l2"] <= budget + 1e-5
        norms = d.norm(dim=1)
        # placed on the uint8 grid at (nearly) the largest norm within budget, for every image (no clipping here);
        # LSP moves in coarser steps: one grey level on a whole 8x8 patch
        assert norms.min() >= (0.98 if name == "lsp" else 0.995) * budget, (norms.min(), budget)
        assert norms.mean() >= (0.99 if name == "lsp" else 0.998) * budget


def test_lsp_budget_scales_with_image_size():
    ds = toy(n=40, shape=(1, 28, 28))
    p = craft("lsp", ds, progress=False)
    assert p.meta.budget == pytest.approx(math.sqrt(784) * 6 / 255)
    assert p.measure(ds)["l2"] <= p.meta.budget + 1e-5


def test_ar_budget_on_real_looking_images_with_clipping():
    """Saturated pixels clip; the budget still holds and the largest image sits at 1.0 (the public bug: ~1/32)."""
    ds = toy(n=60, classes=4, lo=0, hi=256)
    p = craft("ar", ds, progress=False)
    norms = delta_of(p, ds).flatten(1).norm(dim=1)
    assert norms.max() <= 1.0 + 1e-5
    assert norms.max() >= 0.99 and norms.median() >= 0.9


# ---- index mapping ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_FREE)
def test_permuted_indices_fail_the_check(name, crafted):
    """Poison i must perturb image indices[i]: swapping two same-class images breaks the budget check."""
    ds, poisons = crafted
    p = copy.deepcopy(poisons[name])
    p.check(ds)
    members = torch.nonzero(p.labels == p.labels[0]).flatten()
    a, b = int(members[0]), int(members[1])
    p.indices[[a, b]] = p.indices[[b, a]]  # labels still agree, so only the budget check can catch it
    with pytest.raises(UserError, match="budget"):
        p.check(ds)


def test_lsp_is_samplewise_from_class_clusters():
    """The paper's LSP: each image its own draw, all draws of a class near one hypercube vertex."""
    ds = toy(n=200)
    p = craft("lsp", ds, progress=False)
    d = delta_of(p, ds)
    y = p.labels
    # piecewise constant on 8x8 patches
    patches = d.unfold(2, 8, 8).unfold(3, 8, 8)  # N, C, 4, 4, 8, 8
    assert (patches == patches[..., :1, :1]).all()
    # sample-wise: two images of a class get different noise
    c0 = torch.nonzero(y == 0).flatten()
    assert not torch.equal(d[c0[0]], d[c0[1]])
    # linearly separable by class: nearest class mean on the noise alone is perfect
    flat = d.flatten(1)
    means = torch.stack([flat[y == k].mean(0) for k in range(10)])
    assert (torch.cdist(flat, means).argmin(1) == y).all()


def test_lsp_classwise_option_identical_within_class():
    ds = toy()
    p = craft("lsp", ds, classwise=True, progress=False)
    d = delta_of(p, ds)
    for k in range(10):
        dk = d[p.labels == k]
        assert (dk == dk[:1]).all()
    assert not torch.equal(d[p.labels == 0][0], d[p.labels == 1][0])


def test_ops_is_classwise_and_distinct(crafted):
    ds, poisons = crafted
    p = poisons["ops"]
    where = p.meta.extra["ops_pixels"]
    pairs = set()
    for k, (px,) in enumerate(where):
        r, c, colour = px["row"], px["col"], px["colour"]
        pairs.add((r, c, tuple(colour)))
        imgs = p.images[p.labels == k]
        # every image of the class shows the same colour at the same pixel
        assert (imgs[:, :, r, c] == torch.tensor(colour, dtype=torch.uint8) * 255).all()
    assert len(pairs) == 10


def test_ops_search_matches_the_papers_objective():
    """Vectorised integer search == the paper's mean/std objective computed naively, position by position."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (30, 3, 5, 6), dtype=np.uint8)
    labels = np.arange(30) % 3
    colours = corner_colours(3)
    chosen = search(images, labels, 3, 1)
    taken = set()
    for k in range(3):
        x = images[labels == k].astype(np.float64) / 255
        best, arg = -1.0, None
        for pos in range(30):
            r, c = divmod(pos, 6)
            for ci, col in enumerate(colours):
                if (pos, ci) in taken:
                    continue
                change = np.abs(col[None, :] - x[:, :, r, c])
                s = change.mean() / change.std()
                if s > best + 1e-12:
                    best, arg = s, (pos, ci)
        assert chosen[k] == [arg]
        taken.add(arg)
    # the closed-form scores agree with the naive ones everywhere
    s = scores(images[labels == 0], colours)
    x = images[labels == 0].astype(np.float64) / 255
    naive = np.array(
        [
            [
                np.abs(col[None] - x[:, :, p // 6, p % 6]).mean() / np.abs(col[None] - x[:, :, p // 6, p % 6]).std()
                for col in colours
            ]
            for p in range(30)
        ]
    )
    np.testing.assert_allclose(s, naive, rtol=1e-9)


def test_ops_perfect_shortcut_scores_infinite():
    images = np.full((4, 1, 2, 2), 100, dtype=np.uint8)
    s = scores(images, corner_colours(1))
    assert np.isinf(s).all()  # every image changes by the same amount: the ideal shortcut


# ---- AR processes -----------------------------------------------------------------------------------------
def test_ar_recursion_matches_the_definition():
    rng = np.random.default_rng(0)
    coef = rng.standard_normal((4, 3, 3)) * 0.3
    start = rng.standard_normal((4, 7, 9))
    fast = ar_generate(coef, start.copy())
    slow = start.copy()
    for m in range(4):
        for i in range(2, 7):
            for j in range(2, 9):
                w = slow[m, i - 2 : i + 1, j - 2 : j + 1].copy()
                w[2, 2] = 0
                slow[m, i, j] = (w * coef[m]).sum()
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


def test_ar_100_classes_finite_distinct_nondegenerate():
    ds = toy(n=200, classes=100)
    p = craft("ar", ds, progress=False)
    d = delta_of(p, ds).flatten(1)
    assert torch.isfinite(d).all() and d.norm(dim=1).min() > 0.99
    coefs = np.array(p.meta.extra["ar_coefficients"])  # recorded in the poison (6 decimals)
    assert coefs.shape == (100, 3, 3, 3) and np.isfinite(coefs).all()
    np.testing.assert_allclose(coefs.sum(axis=(2, 3)), 1.0, atol=1e-4)  # each channel's filter sums to 1
    assert (coefs[:, :, 2, 2] == 0).all()
    assert len(np.unique(coefs.reshape(100, -1), axis=0)) == 100
    rng = np.random.default_rng(5)
    noise = ar_noise(coefs, np.repeat(np.arange(100), 2), (3, 32, 32), 4, rng)
    assert np.isfinite(noise).all()
    flat = noise.reshape(200, 3, -1)
    assert (flat.std(axis=2) > 1e-3 * np.sqrt((flat**2).mean(axis=2))).all()  # no constant channel
    # the AR structure (the paper's "perfect model"): a class's matching filter gives no response on a fresh
    # sample of its own process and a clear one on every other class's
    x = torch.from_numpy(noise[::2] / np.linalg.norm(flat[::2].reshape(100, -1), axis=1)[:, None, None, None])
    r = response(x, torch.cat([matching_filter(c) for c in coefs]))  # (pattern, filter)
    assert r.diagonal().max() < 1e-9
    assert r[~torch.eye(100, dtype=torch.bool)].min() > 0.1


def test_ar_processes_are_stable_for_any_seed():
    """APBench's 100-class parameters include a process that overflows (class 9); sampled ones never do."""
    for seed in range(3):
        coefs, _ = sample_processes(20, 3, (32, 32), ARConfig(), np.random.default_rng(seed))
        noise = ar_noise(coefs, np.arange(20), (3, 32, 32), 4, np.random.default_rng(seed))
        rms = np.sqrt((noise**2).mean(axis=(1, 2, 3)))
        assert np.isfinite(rms).all() and (rms < 50).all()


# ---- AR: the authors' stability test and published coefficient files ----------------------------------------
def test_ar_authors_stability_rejects_a_process_the_rms_rule_accepts():
    """x[i, j] = x[i - 2, j] in every channel (coefficients summing to 1, as the finder's): the pattern repeats two
    rows of the unit-variance start, so its per-channel RMS is ~1 (under the RMS rule's 3) and its joint L2 norm
    over 3x32x32 is ~sqrt(3072) = 55 (over the authors' 50)."""
    from uebench.attacks.ar import stable_processes

    coef = np.zeros((1, 3, 3, 3))
    coef[:, :, 0, 2] = 1.0
    patterns = ar_noise(coef, np.zeros(30, dtype=int), (3, 32, 32), 4, np.random.default_rng(0))
    norms = np.linalg.norm(patterns.reshape(30, -1), axis=1)
    assert 50 < np.median(norms) < 60
    for seed in range(5):
        assert stable_processes(coef, np.random.default_rng(seed), (32, 32), ARConfig(stability="rms")).all()
        assert not stable_processes(coef, np.random.default_rng(seed), (32, 32), ARConfig()).any()  # the default
        assert stable_processes(coef, np.random.default_rng(seed), (32, 32), ARConfig(l2_bound=70.0)).all()


def test_ar_default_processes_pass_the_authors_test():
    """Every kept process's test patterns (3 starts, 3x32x32) have joint L2 <= 50; the RMS rule keeps some that do
    not, on the very starts it tested them on. Re-tested on fresh starts, nearly all default processes pass again."""
    from uebench.attacks.ar import stable_processes

    coefs, norms = sample_processes(20, 3, (32, 32), ARConfig(), np.random.default_rng(0))
    assert norms.shape == (20, 3) and (norms <= 50).all()
    _, rms_norms = sample_processes(20, 3, (32, 32), ARConfig(stability="rms"), np.random.default_rng(0))
    assert (rms_norms.max(axis=1) > 50).any()
    retest = np.mean([stable_processes(coefs, np.random.default_rng(100 + s), (32, 32), ARConfig()) for s in range(10)])
    assert retest >= 0.85, retest
    p = craft("ar", toy(n=40, classes=4), progress=False)  # which rule ran is recorded in the poison
    assert p.meta.params["stability"] == "authors" and p.meta.params["l2_bound"] == 50.0
    source = p.meta.extra["ar_processes"]
    assert source["source"] == "sampled" and source["stability"] == "authors" and source["l2_bound"] == 50.0
    assert max(source["pattern_l2_max"]) <= 50


def file_coefficients(classes: int = 4, seed: int = 7) -> np.ndarray:
    """Stable, separable processes as float32, the dtype of the authors' files."""
    coefs, _ = sample_processes(classes, 3, (32, 32), ARConfig(), np.random.default_rng(seed))
    return coefs.astype(np.float32)


def own_process_found(p, ds, coefs: np.ndarray) -> float:
    """Fraction of poisoned images whose smallest matching-filter response is their own class's process's."""
    d = delta_of(p, ds).double()
    r = response(d / d.flatten(1).norm(dim=1)[:, None, None, None], torch.cat([matching_filter(c) for c in coefs]))
    return float((r.argmin(dim=1) == p.labels).double().mean())


@pytest.mark.parametrize("layout", ["npy", "pt-tensor", "pt-list"])
def test_ar_coefficient_file_is_used_exactly(tmp_path, layout):
    """A published file's processes are the poison's, whatever the seed: .npy, a torch.save'd (K, 3, 3, 3) tensor
    (the authors' 100-class layout) or a list of (3, 3, 3) tensors (their 10-class layout)."""
    coefs = file_coefficients()
    path = tmp_path / ("coefs.npy" if layout == "npy" else "coefs.pt")
    if layout == "npy":
        np.save(path, coefs)
    elif layout == "pt-tensor":
        torch.save(torch.from_numpy(coefs), path)
    else:
        torch.save([torch.from_numpy(c) for c in coefs], path)
    ds = toy(n=40, classes=4, lo=100, hi=156)  # no clipping
    a = craft("ar", ds, seed=0, coefficients=str(path), progress=False)
    b = craft("ar", ds, seed=1, coefficients=str(path), progress=False)
    for p in (a, b):
        np.testing.assert_allclose(np.array(p.meta.extra["ar_coefficients"]), coefs, rtol=0, atol=5e-7)
        assert p.meta.extra["ar_processes"]["source"] == "file"
        assert p.meta.extra["ar_processes"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert own_process_found(p, ds, coefs.astype(np.float64)) == 1.0  # the noise is the file's processes'
        assert p.measure(ds)["l2"] <= 1.0 + 1e-5
    assert not torch.equal(a.images, b.images)  # fresh noise samples per seed, the same processes
    sampled = craft("ar", ds, seed=0, progress=False)
    assert own_process_found(sampled, ds, coefs.astype(np.float64)) < 0.9  # a different set of processes


def test_ar_coefficient_file_refusals(tmp_path):
    ds = toy(n=20, classes=4)
    good = file_coefficients()

    def refused(name: str, arr, match: str) -> None:
        path = tmp_path / name
        if name.endswith(".npy"):
            np.save(path, arr, allow_pickle=True)
        else:
            torch.save(arr, path)
        with pytest.raises(UserError, match=match):
            craft("ar", ds, coefficients=str(path), progress=False)

    with pytest.raises(UserError, match="not found"):
        craft("ar", ds, coefficients=str(tmp_path / "missing.pt"), progress=False)
    (tmp_path / "c.txt").write_text("0.1 0.2")
    with pytest.raises(UserError, match="unknown extension"):
        craft("ar", ds, coefficients=str(tmp_path / "c.txt"), progress=False)
    refused("classes.npy", file_coefficients(classes=5), "5 processes; the dataset has 4 classes")
    refused("channels.npy", good[:, :1], "1-channel processes; the dataset's images have 3 channels")
    refused("kernel.npy", np.zeros((4, 3, 5, 5)), "5x5 kernels")
    refused("flat.npy", good.reshape(4, 3, 9), "expected \\(classes, channels, 3, 3\\)")
    nan = good.copy()
    nan[1, 2, 0, 0] = np.nan
    refused("nan.npy", nan, "1 non-finite")
    refused("inf.pt", torch.from_numpy(np.where(np.arange(108).reshape(4, 3, 3, 3) == 5, np.inf, good)), "non-finite")
    centre = good.copy()
    centre[0, 0, 2, 2] = 0.5
    refused("centre.npy", centre, "output position")
    refused("object.npy", np.array([good, None], dtype=object), "not a plain .npy")
    refused("ragged.pt", [torch.zeros(3, 3, 3), torch.zeros(2, 3, 3)], "different shapes")
    refused("dict.pt", {"coefficients": torch.from_numpy(good)}, "holds a dict; expected a tensor")
    refused("pickled.pt", Fraction(1, 2), "weights_only")  # arbitrary objects are never unpickled
    explodes = good.copy()
    explodes[2] = 0.0
    explodes[2, :, 2, 1] = 2.0  # x[i, j] = 2 x[i, j - 1]: doubles along every row
    refused("explodes.pt", torch.from_numpy(explodes), r"classes \[2\] explode")
    with pytest.raises(UserError, match="parameter coefficients must be a string"):
        craft("ar", ds, coefficients=3, progress=False)


def test_ar_refuses_budgets_and_bounds_outside_sense():
    ds = toy(n=20, classes=4)
    for eps in (0.0, -1.0, float("nan"), float("inf"), "1.0", True):
        with pytest.raises(UserError, match="eps must be positive and finite|parameter eps must be a finite number"):
            craft("ar", ds, eps=eps, progress=False)
    with pytest.raises(UserError, match="whole image range"):
        craft("ar", ds, eps=math.sqrt(3 * 32 * 32) + 1, progress=False)
    for bad in ({"stability": "loose"}, {"l2_bound": 0.0}, {"l2_bound": float("nan")}, {"rms_bound": -1.0}):
        with pytest.raises(UserError, match="bad parameters|must be a finite number"):
            craft("ar", ds, progress=False, **bad)


def test_ops_100_classes():
    ds = toy(n=300, classes=100)
    p = craft("ops", ds, progress=False)
    pairs = {(w[0]["row"], w[0]["col"], tuple(w[0]["colour"])) for w in p.meta.extra["ops_pixels"]}
    assert len(pairs) == 100
    assert p.measure(ds)["l0"] == 1


# ---- determinism ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_FREE)
def test_same_seed_same_bytes(name):
    ds = toy(n=40, classes=4)
    a = craft(name, ds, seed=3, progress=False)
    b = craft(name, ds, seed=3, progress=False)
    assert torch.equal(a.images, b.images)
    c = craft(name, ds, seed=4, progress=False)
    if name == "ops":  # a deterministic search: the seed plays no part
        assert torch.equal(a.images, c.images)
    else:
        assert not torch.equal(a.images, c.images)


def test_subset_poison_points_into_the_full_split():
    ds = toy(n=100)
    p = craft("lsp", ds, subset=30, progress=False)
    assert len(p) == 30 and p.meta.dataset_size == 100
    assert torch.equal(p.labels, ds.labels[p.indices])
    p.check(ds)


# ---- refusals (the CLI tests run them end to end) -----------------------------------------------------------
def test_refusals():
    with pytest.raises(UserError, match="smaller than its 3x3"):
        craft("ar", toy(n=20, shape=(3, 2, 2)), progress=False)
    with pytest.raises(UserError, match="offer only 8"):
        craft("ops", toy(n=20, shape=(3, 1, 1)), progress=False)
    with pytest.raises(UserError, match="pixels"):
        craft("ops", toy(n=20), pixels=0, progress=False)
    with pytest.raises(UserError, match="positive"):
        craft("ar", toy(n=20), eps=-1.0, progress=False)
    with pytest.raises(UserError, match="whole image range"):
        craft("ar", toy(n=20), eps=100.0, progress=False)
    with pytest.raises(UserError, match=r"outside \(0, 1\]"):
        craft("lsp", toy(n=20), eps=1.5, progress=False)
    with pytest.raises(UserError, match="only 20 images"):
        craft("lsp", toy(n=20), subset=21, progress=False)


# ---- efficacy ---------------------------------------------------------------------------------------------
# A victim's clean-test accuracy should collapse when it trains on the poison. On this CPU a shortcut takes
# a few epochs over thousands of images to win the race against the real features (with 1,000 images or 3 epochs
# a ResNet learns CIFAR content as fast as LSP or AR noise), so the fast tests use the cheapest victim on which
# each attack's collapse shows; the slow test runs the same small ResNet-18 recipe on all three.
@pytest.fixture(scope="module")
def cifar():
    from uebench.data import load

    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared real data not found at {SHARED_DATA}")
    return load("cifar10", SHARED_DATA, "train"), load("cifar10", SHARED_DATA, "test")


def test_lsp_collapses_a_small_victim(cifar):
    """LSP, 5,085 CIFAR images, 3 epochs of a one-layer patch CNN: clean ~40%, poisoned near chance."""
    train, test = cifar
    p = craft("lsp", train, progress=False)
    torch.manual_seed(0)
    clean = fit_and_test(patch_net(), train.images, train.labels, test, epochs=3, batch=128, lr=0.05)
    torch.manual_seed(0)
    poisoned = fit_and_test(patch_net(), p.apply(train).images, train.labels, test, epochs=3, batch=128, lr=0.05)
    assert clean > 33, clean
    assert poisoned < clean - 12 and poisoned < 28, (clean, poisoned)


def test_ops_collapses_a_small_resnet(cifar):
    """OPS, 1,000 CIFAR images, 10 epochs of a 1/8-width ResNet-18 without augmentation: poisoned near chance."""
    from uebench.models import create_model

    train, test = cifar
    p = craft("ops", train, subset=1000, progress=False)
    sub = train.subset(p.indices)

    def victim():
        torch.manual_seed(0)
        return create_model("resnet18", num_classes=10, in_channels=3, image_size=32, width=0.125)

    clean = fit_and_test(victim(), sub.images, sub.labels, test, epochs=10, batch=64, lr=0.05)
    poisoned = fit_and_test(victim(), p.images, p.labels, test, epochs=10, batch=64, lr=0.05)
    assert clean > 22, clean
    # measured 37.3% clean and 19.7% poisoned on an AMD avx512-bf16 CPU at one thread (fp32 throughout; the kernels,
    # and so the trajectory, differ by machine): the absolute bound allows that, the margin stays as it was
    assert poisoned < clean - 8 and poisoned < 22, (clean, poisoned)


def test_ar_noise_alone_is_a_learnable_class_signal():
    """AR's mechanism, cheaply: on grey images, a one-layer CNN learns the classes from the AR noise alone and
    recognises fresh samples of the same processes (a ResNet's collapse on real images needs more epochs than
    a fast test can give: see the slow test)."""
    n = 1200
    grey = ImageDataset(
        "grey",
        "train",
        torch.full((n, 3, 32, 32), 128, dtype=torch.uint8),
        torch.arange(n) % 10,
        [str(i) for i in range(10)],
    )
    p = craft("ar", grey, progress=False)
    fresh = ImageDataset("grey", "test", p.images[1000:], p.labels[1000:], grey.classes)
    acc = fit_and_test(patch_net(), p.images[:1000], p.labels[:1000], fresh, epochs=6, batch=64, lr=0.05)
    assert acc > 40, acc


@pytest.mark.slow
@pytest.mark.parametrize("name,params", [("lsp", {"eps": 12 / 255}), ("ar", {"eps": 4.0})], ids=["lsp-2x", "ar-4x"])
def test_stronger_model_free_poisons_collapse_on_cifar(name, params, cifar):
    """benchmarks/budget_sweep.sh in miniature (ResNet-18 width 0.125, recipe quick, 10 epochs, crop + flip).

    At this CPU scale the victim learns the images' content before a model-free perturbation at its paper budget
    (LSP 37.0%, AR 50.6% against clean 47.1%: docs/guides/own-poison.md); at 2x (LSP) and 4x (AR) the perturbation
    wins the race (measured 16.4% and 10.9%). A test of the race, not of the paper's budget."""
    from uebench.training.trainer import TrainConfig, train

    data, test = cifar
    p = craft(name, data, progress=False, **params)
    config = TrainConfig(dataset="cifar10", model="resnet18", width=0.125, recipe="quick", epochs=10, precision="fp32")
    clean = train(config, train_set=data, test_set=test, progress=False).summary["final_test_acc"]
    poisoned = train(config, train_set=p.apply(data), test_set=test, progress=False).summary["final_test_acc"]
    assert poisoned < 0.5 * clean, (clean, poisoned)
