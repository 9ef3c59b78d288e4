"""SAL, beta, #LP and UD against cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from uebench.core.errors import UserError
from uebench.metrics import (
    FastSALConfig,
    ProbeData,
    SALConfig,
    epoch_thresholds,
    layer_sal,
    learnable_count,
    learnable_threshold,
    model_sal,
    two_means_1d,
    unlearnable_distance,
)
from uebench.models import create_model, probed_layers
from uebench.training.sal_probe import SALProbe


def mse(out, y):
    return ((out.squeeze(-1) - y) ** 2).mean()


def one_weight(w0: float = 1.0) -> nn.Module:
    m = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(w0)
    return m


def scalar_data(target: float, n: int = 4) -> ProbeData:
    # the loss is (w - target)^2 whatever the batch: one batch per pass, so one SGD step per pass
    return ProbeData(torch.ones(n, 1), torch.full((n,), target), batch_size=n)


# ---- SAL: closed forms ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_one_weight_quadratic_optimum_outside_the_ball(mode):
    # L(w) = (w - 2)^2, w0 = 1, ball [0.95, 1.05]. Descent: 1 - 0.1 * 2(1 - 2) = 1.2 -> projected to 1.05, stays
    # there; ascent: 1 + 0.1 * 2(1 - 2) = 0.8 -> projected to 0.95. L0 = 1, L_min = 0.9025, L_max = 1.1025.
    fast = FastSALConfig(step_scale=1.0, tol=0.0, augment="none")
    r = layer_sal(one_weight(), "", scalar_data(2.0), loss_fn=mse, mode=mode, fast=fast, rounds=10)
    assert r.loss0 == pytest.approx(1.0)
    assert r.loss_min == pytest.approx((1.05 - 2) ** 2, rel=1e-5)
    assert r.loss_max == pytest.approx((0.95 - 2) ** 2, rel=1e-5)
    assert (
        r.sal == pytest.approx(0.1025, rel=1e-4)
        and r.rise == pytest.approx(0.1025, rel=1e-4)
        and r.drop == pytest.approx(0.0975, rel=1e-4)
    )


@pytest.mark.parametrize("rounds", [3, 10])
def test_one_weight_quadratic_optimum_inside_the_ball_counts_rounds(rounds):
    # L(w) = (w - 1.02)^2, w0 = 1: descent contracts w - 1.02 by 0.8 per round (never reaching 1.02), so after
    # R rounds L_min = 4e-4 * 0.64^R; ascent grows it by 1.2 per round until the boundary 0.95 (round 7), then
    # L_max = 0.07^2.
    r = layer_sal(one_weight(), "", scalar_data(1.02), loss_fn=mse, rounds=rounds)
    assert r.loss0 == pytest.approx(4e-4, rel=1e-4)
    assert r.loss_min == pytest.approx(4e-4 * 0.64**rounds, rel=1e-3)
    expected_max = (0.02 * 1.2**rounds) ** 2 if rounds < 7 else 0.07**2
    assert r.loss_max == pytest.approx(expected_max, rel=1e-3)
    assert r.sal == pytest.approx(max(expected_max - 4e-4, 4e-4 * (1 - 0.64**rounds)), rel=1e-3)


@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_linear_loss_reaches_the_exact_extremes_of_the_ball(mode):
    # L(W) = W . v is linear: its min and max over ||W - W0|| <= eps ||W0|| are L0 -/+ eps ||W0|| ||v||, reached
    # at W0 -/+ eps ||W0|| v / ||v||. SGD leaves the ball along -v (+v) in the first pass and projection puts it
    # exactly there; every later round comes back to the same point. Two batches per pass, shuffled.
    torch.manual_seed(0)
    d = 12
    model = nn.Linear(d, 1, bias=False)
    v = torch.randn(d) * 3
    data = ProbeData(v.repeat(10, 1), torch.zeros(10), batch_size=4)
    r = layer_sal(model, "", data, loss_fn=lambda out, y: out.mean(), mode=mode)
    w0 = model.weight.detach().flatten()
    reach = 0.05 * float(w0.norm() * v.norm())
    assert r.loss0 == pytest.approx(float(w0 @ v), abs=1e-5)
    assert r.loss_min == pytest.approx(r.loss0 - reach, abs=1e-4)
    assert r.loss_max == pytest.approx(r.loss0 + reach, abs=1e-4)
    assert r.sal == pytest.approx(reach, abs=1e-4)


def test_running_origin_tracks_best_from_the_given_loss():
    # with L0 above every loss of the ball, the ascending branch never beats it: L_max = L0, SAL = L0 - L_min
    r = layer_sal(one_weight(), "", scalar_data(2.0), loss_fn=mse, origin="running", running_loss=5.0)
    assert r.loss0 == 5.0 and r.loss_max == 5.0
    assert r.loss_min == pytest.approx(0.9025, rel=1e-5) and r.sal == pytest.approx(5.0 - 0.9025, rel=1e-5)
    with pytest.raises(UserError, match="running"):
        layer_sal(one_weight(), "", scalar_data(2.0), loss_fn=mse, origin="running")


class WithIdleLayers(nn.Module):
    """`unused` never runs (disconnected); `muted` runs but reaches the loss times zero (a zero gradient)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(4, 3)
        self.muted = nn.Linear(4, 3)
        self.unused = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(x) + 0.0 * self.muted(x)


def two_targets(a: float, b: float) -> ProbeData:
    # sample 0 (target a) falls in cross-fitting half A, sample 1 (target b) in half B
    return ProbeData(torch.ones(2, 1), torch.tensor([a, b]), batch_size=2, shuffle=False, drop_last=False)


def test_crossfit_agrees_with_in_sample_when_the_halves_agree():
    # L_A = (w - 2)^2, L_B = (w - 1.5)^2, w0 = 1, L0 = 0.625; every gradient points the same way, so every search
    # ends on the same boundary: descent at 1.05 (L = (0.9025 + 0.2025) / 2 = 0.5525), ascent at 0.95
    # (L = (1.1025 + 0.3025) / 2 = 0.7025); SAL = 0.0775 either way.
    for crossfit in (False, True):
        fast = FastSALConfig(step_scale=1.0, tol=0.0, crossfit=crossfit)
        r = layer_sal(one_weight(), "", two_targets(2.0, 1.5), loss_fn=mse, mode="fast", fast=fast, rounds=3)
        assert (r.loss0, r.loss_min, r.loss_max) == pytest.approx((0.625, 0.5525, 0.7025), rel=1e-5)


def test_crossfit_scores_a_direction_only_where_the_other_half_agrees():
    # L_A = (w - 2)^2, L_B = (w - 0.2)^2, w0 = 1, L0 = 0.82, one round, step 0.1.
    # In-sample: gradient -0.2, descent to 1.02 (L = (0.9604 + 0.6724) / 2 = 0.8164), ascent to 0.98 (0.8244).
    # Cross-fitted: the halves pull apart. Descending A goes to 1.05 and scores L_B(1.05) = 0.7225; descending B
    # goes to 0.95 and scores L_A(0.95) = 1.1025: mean 0.9125 > L0. Ascending: 0.5625 and 0.9025, mean 0.7325 < L0.
    # Neither branch beats L0: what the in-sample search found was the two samples' disagreement, not the layer.
    plain = layer_sal(
        one_weight(),
        "",
        two_targets(2.0, 0.2),
        loss_fn=mse,
        mode="fast",
        rounds=1,
        fast=FastSALConfig(step_scale=1.0, tol=0.0, crossfit=False),
    )
    assert (plain.loss_min, plain.loss_max) == pytest.approx((0.8164, 0.8244), rel=1e-5)
    cross = layer_sal(
        one_weight(),
        "",
        two_targets(2.0, 0.2),
        loss_fn=mse,
        mode="fast",
        rounds=1,
        fast=FastSALConfig(step_scale=1.0, tol=0.0, crossfit=True),
    )
    assert cross.loss0 == pytest.approx(0.82) and cross.loss_min == cross.loss_max == cross.loss0 and cross.sal == 0.0


def test_anchor_levels_the_subset_at_the_whole_sets_loss():
    # 8 samples, loss (w - t)^2 at w0 = 1: the whole set's L0 is the mean of (1 - t)^2 = 1.375; a 3-sample subset
    # has its own level. Anchored, L0 is the whole set's and the changes inside the ball are the subset's.
    t = torch.tensor([2.0, 1.5, 0.5, 3.0, 2.0, 1.5, 0.5, 3.0])
    data = ProbeData(torch.ones(8, 1), t, batch_size=8)
    plain = layer_sal(
        one_weight(),
        "",
        data,
        loss_fn=mse,
        mode="fast",
        rounds=2,
        fast=FastSALConfig(subset=3, step_scale=1.0, anchor=False),
    )
    anchored = layer_sal(
        one_weight(),
        "",
        data,
        loss_fn=mse,
        mode="fast",
        rounds=2,
        fast=FastSALConfig(subset=3, step_scale=1.0, anchor=True),
    )
    assert anchored.loss0 == pytest.approx(1.375)
    assert plain.loss0 != pytest.approx(1.375)  # the subset's own level differs (else the test shows nothing)
    assert (anchored.rise, anchored.drop, anchored.sal) == pytest.approx((plain.rise, plain.drop, plain.sal), rel=1e-6)


def test_rescore_scores_the_subsets_search_on_the_whole_set():
    # loss (w - t)^2, w0 = 1, radius 0.05. Every 3-sample subset has mean t > 1, so its search ascends to w = 0.95 and
    # descends to w = 1.05; rescored, each point's loss is the whole set's: L(1 + d) = L0 - 1.875 d + d^2 with
    # L0 = mean (1 - t)^2 = 1.328125, so L_max = L(0.95) = 1.424375, L_min = L(1.05) = 1.236875, SAL 0.09625.
    t = torch.tensor([2.0, 1.5, 1.25, 3.0, 2.0, 1.5, 1.25, 3.0])
    data = ProbeData(torch.ones(8, 1), t, batch_size=8)

    def run(rescore: bool, subset: int = 3):
        fast = FastSALConfig(subset=subset, step_scale=1.0, crossfit=False, rescore=rescore)
        return layer_sal(one_weight(), "", data, loss_fn=mse, mode="fast", rounds=2, fast=fast)

    rescored = run(True)
    assert (rescored.loss0, rescored.loss_max, rescored.loss_min) == pytest.approx((1.328125, 1.424375, 1.236875))
    assert rescored.sal == pytest.approx(0.09625)
    assert run(False).loss_max != pytest.approx(1.424375)  # the subset's own scores differ (else this shows nothing)
    assert run(True, subset=8).sal == run(False, subset=8).sal  # a subset that is the whole set: nothing to rescore


@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_disconnected_and_zero_gradient_layers_have_sal_zero(mode):
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    y = (x @ torch.randn(4, 3)).argmax(1)  # labels that follow the inputs: a direction both cross-fitting halves share
    result = model_sal(WithIdleLayers(), (x, y), mode=mode, batch_size=8, rounds=3)
    assert list(result.layers) == ["head", "muted", "unused"]
    assert result.layers["head"].sal > 1e-3
    assert result.layers["muted"].sal == pytest.approx(0.0, abs=1e-6)
    assert result.layers["unused"].sal == pytest.approx(0.0, abs=1e-6)


# ---- SAL on real architectures: names, restoration, determinism, fast vs faithful -------------------------
class TinyResNet(nn.Module):
    """Eight probed layers with what the fast mode must split correctly: BatchNorm, an identity residual, a
    strided block with a 1x1 shortcut."""

    def __init__(self, classes: int = 3):
        super().__init__()
        bn = nn.BatchNorm2d
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), bn(8)
        self.a, self.bna, self.b, self.bnb = (
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            bn(8),
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            bn(8),
        )
        self.c, self.bnc, self.d, self.bnd = (
            nn.Conv2d(8, 16, 3, 2, 1, bias=False),
            bn(16),
            nn.Conv2d(16, 16, 3, padding=1, bias=False),
            bn(16),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), bn(16))
        self.e = nn.Conv2d(16, 16, 3, padding=1)
        self.linear = nn.Linear(16, classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(x + self.bnb(self.b(torch.relu(self.bna(self.a(x))))))
        x = torch.relu(self.shortcut(x) + self.bnd(self.d(torch.relu(self.bnc(self.c(x))))))
        x = torch.relu(self.e(x))
        return self.linear(x.mean((2, 3)))


def toy_images(n: int = 32, seed: int = 0, side: int = 16, signal: int = 30):
    # class = the brighter colour channel, buried in noise: learnt partly in a few steps, far from zero loss
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    images = (torch.rand(n, 3, side, side, generator=g) * 200).to(torch.uint8)
    images[torch.arange(n), labels] += signal
    return images, labels


def trained_tiny(steps: int = 30) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = TinyResNet()
    images, labels = toy_images(64, seed=1, side=12)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for i in range(steps):
        idx = torch.arange(16) + 16 * (i % 4)
        loss = nn.functional.cross_entropy(model(images[idx].float() / 255), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), images, labels


def test_fast_split_computes_the_same_output_for_every_layer():
    from uebench.metrics.fast_sal import Split, cache_frontier, split_at, trace

    torch.manual_seed(0)
    for model, x in [
        (TinyResNet().eval(), torch.rand(8, 3, 16, 16)),
        (create_model("resnet18", width=0.125).eval(), torch.rand(4, 3, 32, 32)),
    ]:
        traced = trace(model)
        with torch.no_grad():
            ref = model(x)
            for name in probed_layers(model):
                split = split_at(model, traced, name)
                assert isinstance(split, Split), name
                assert torch.allclose(split.suffix(*cache_frontier(split.prefix, x, 3)), ref, atol=1e-5), name


def test_fast_splits_are_made_once_per_model_and_follow_its_weights():
    # probing every epoch reuses the model's splits; the weights change in place between probes
    import copy

    from uebench.metrics.fast_sal import cached_split

    model, images, labels = trained_tiny(steps=2)
    data = ProbeData(images[:32], labels[:32], batch_size=16)
    fast = FastSALConfig(subset=32, rounds=2)
    model_sal(model, data, mode="fast", fast=fast)
    assert cached_split(model, "linear") is cached_split(model, "linear")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.1)
    again = model_sal(model, data, mode="fast", fast=fast).values()
    fresh = model_sal(copy.deepcopy(model), data, mode="fast", fast=fast).values()
    assert again == fresh


def test_fast_splits_follow_a_models_trace_key():
    # a forward pass that depends on state (which heads run) is traced once per value of the model's trace_key
    from uebench.metrics.fast_sal import DISCONNECTED, cached_split

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2), nn.Linear(4, 2)
            self.trace_key = "a"

        def forward(self, x):
            h = self.body(x)
            return self.a(h) if self.trace_key == "a" else self.b(h)

    net = TwoHeads()
    assert cached_split(net, "b") == DISCONNECTED  # head a runs: b never reaches the output
    net.trace_key = "b"
    assert cached_split(net, "b") != DISCONNECTED and cached_split(net, "a") == DISCONNECTED


def test_every_layer_probed_and_the_model_left_as_found():
    model = create_model("resnet18", width=0.125).train()
    model.layer1[0].conv1.weight.requires_grad_(False)  # a flag SAL must put back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = toy_images(8, side=32)
    data = ProbeData(images, labels, batch_size=8, augment=True)
    for mode in ("faithful", "fast"):
        result = model_sal(model, data, mode=mode, rounds=1, origin="eval", fast=FastSALConfig(subset=8))
        assert list(result.layers) == probed_layers(model) and len(result.layers) == 21
        assert all(r.sal >= 0 and r.loss_min <= r.loss0 <= r.loss_max for r in result.layers.values())
        record = result.to_record()
        assert set(record["sal"]) == set(record["sal_max"]) == set(record["sal_min"]) == set(probed_layers(model))
        assert record["sal_mode"] == mode and record["sal_origin"] == "eval"
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm buffers untouched
    assert model.training
    assert [p.requires_grad for p in model.parameters()].count(False) == 1


def test_sal_is_deterministic_for_a_seed_and_the_stream_follows_the_seed():
    model, images, labels = trained_tiny(steps=4)
    data = ProbeData(images[:32], labels[:32], batch_size=16, augment=True)

    def run(seed, layers=("conv1", "linear")):
        return model_sal(model, data, layers=list(layers), rounds=1, seed=seed, mode="faithful").values()

    assert run(0) == run(0)
    assert run(0) != run(1)  # other augmentation draws
    assert run(0, ["linear"])[0] == run(0)[1]  # a layer's value does not depend on the other layers probed


def test_fast_agrees_with_faithful_on_a_tiny_model():
    # faithful: 64 augmented images, 2 SGD steps per pass, 10 rounds; fast: a fixed half of them augmented
    # once, 5 projected full-batch steps of 2 x lr, the prefix cached. (0.95 here; the benchmark measures more.)
    from scipy.stats import spearmanr

    model, images, labels = trained_tiny()
    data = ProbeData(images, labels, batch_size=32, augment=True)
    faithful = model_sal(model, data, origin="eval", mode="faithful").values()
    fast = model_sal(model, data, origin="eval", mode="fast", fast=FastSALConfig(subset=32)).values()
    assert spearmanr(faithful, fast).statistic >= 0.8


def test_unknown_layer_and_bad_options_are_user_errors():
    model = create_model("resnet18", width=0.125)
    data = (torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))
    with pytest.raises(UserError, match="unknown layer 'layer9.conv' for SAL; valid: conv1, layer1.0.conv1"):
        layer_sal(model, "layer9.conv", data)
    with pytest.raises(UserError, match="unknown SAL mode"):
        model_sal(model, data, mode="quick")
    with pytest.raises(UserError, match="origin"):
        model_sal(model, data, origin="test")
    with pytest.raises(UserError, match="eps > 0"):
        model_sal(model, data, eps=0)
    with pytest.raises(UserError, match="--sal-every"):
        SALConfig(every=0)


def test_sal_probe_during_training_records_every_k_epochs():
    from uebench.training.trainer import TrainConfig, train

    config = TrainConfig(
        model="resnet18",
        width=0.125,
        recipe="quick",
        epochs=2,
        batch_size=32,
        dataset_options={"n_train": 32, "n_test": 16},
    )
    probe = SALProbe(SALConfig(mode="fast", every=2, subset=8, rounds=2), layers=("conv1", "linear"))
    history = train(config, probes=[probe], progress=False).history
    assert "sal" not in history[0]
    rec = history[1]
    assert set(rec["sal"]) == {"conv1", "linear"} and rec["sal_mode"] == "fast" and rec["sal_origin"] == "running"
    assert rec["sal_l0"] == rec["train_loss"]
    for name, value in rec["sal"].items():
        assert value == pytest.approx(max(rec["sal_max"][name] - rec["sal_l0"], rec["sal_l0"] - rec["sal_min"][name]))


# ---- beta, #LP, UD ----------------------------------------------------------------------------------------
def test_beta_of_two_clear_clusters_is_the_midpoint_of_their_centres():
    rows = np.array([[0.1, 0.2, 0.15, 2.0, 2.2], [0.0, 0.05, 1.0, 1.1, 1.2]])
    # row 0: centres 0.15 and 2.1 -> 1.125; row 1: 0.025 and 1.1 -> 0.5625
    assert epoch_thresholds(rows) == pytest.approx([1.125, 0.5625])
    assert learnable_threshold(rows) == pytest.approx((1.125 + 0.5625) / 2)


def test_two_means_edge_cases():
    assert two_means_1d([3.0, 3.0, 3.0]) == (3.0, 3.0)  # a constant row: beta_t is the constant
    assert two_means_1d([5.0]) == (5.0, 5.0)
    assert two_means_1d([0.0, 1.0]) == (0.0, 1.0)
    assert two_means_1d([0.0, 1.0, 2.0]) == (0.0, 1.5)  # an exact tie of the splits keeps the first
    assert learnable_threshold([[1.0, 1.0], [0.0, 2.0]]) == pytest.approx(1.0)
    with pytest.raises(UserError):
        learnable_threshold(np.zeros((0, 21)))
    with pytest.raises(UserError, match="NaN"):
        learnable_threshold([[0.0, float("nan")]])


def test_two_means_is_the_global_optimum():
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = np.concatenate([rng.exponential(1.0, rng.integers(1, 15)), rng.normal(3, 1, rng.integers(1, 8))])
        lo, hi = two_means_1d(v)
        # any threshold split of the sorted values: none has a lower within-cluster sum of squares
        sse = lambda a, b: ((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()  # noqa: E731
        s = np.sort(v)
        best = min(sse(s[:k], s[k:]) for k in range(1, len(s)))
        mine = ((s[s <= (lo + hi) / 2] - lo) ** 2).sum() + ((s[s > (lo + hi) / 2] - hi) ** 2).sum()
        assert mine == pytest.approx(best, abs=1e-9)


def test_learnable_count_is_strictly_greater_cells_per_epoch():
    sal = np.array([[0.5, 0.6, 0.4], [0.5, 0.5, 0.9], [0.1, 0.2, 0.3], [0.7, 0.8, 0.9]])
    assert learnable_count(sal, 0.5) == pytest.approx((1 + 1 + 0 + 3) / 4)  # cells equal to beta do not count
    assert learnable_count(sal, 1.0) == 0.0


def table1_matrix(lp: float, epochs: int = 100, layers: int = 21) -> np.ndarray:
    """A SAL matrix whose every epoch has low (0) and high (1) layers, lp*epochs high cells in all (beta = 0.5)."""
    cells = round(lp * epochs)
    per, extra = divmod(cells, epochs)
    a = np.zeros((epochs, layers))
    for t in range(epochs):
        a[t, : per + (t < extra)] = 1.0
    return a


# Table 1 of the paper: (#LP, UD) per dataset, the clean #LP first
TABLE1 = {
    "C10": (
        3.32,
        {
            "EM": (0.62, 0.187),
            "REM": (1.54, 0.464),
            "DC": (1.00, 0.301),
            "TAP": (5.44, 1.639),
            "LSP": (1.14, 0.343),
            "OPS": (0.52, 0.157),
        },
    ),
    "C100": (
        2.25,
        {
            "EM": (0.25, 0.111),
            "REM": (2.25, 1.000),
            "DC": (2.24, 0.996),
            "TAP": (2.73, 1.213),
            "LSP": (0.84, 0.373),
            "OPS": (0.02, 0.009),
        },
    ),
    "IN100": (
        1.86,
        {
            "EM": (0.02, 0.011),
            "REM": (2.38, 1.280),
            "DC": (3.40, 1.828),
            "TAP": (4.22, 2.269),
            "LSP": (3.34, 1.796),
            "OPS": (2.66, 1.430),
        },
    ),
}


@pytest.mark.parametrize("dataset", sorted(TABLE1))
def test_table1_ud_follows_from_lp(dataset):
    lp_clean, rows = TABLE1[dataset]
    clean = table1_matrix(lp_clean)
    assert learnable_threshold(clean) == pytest.approx(0.5)
    for method, (lp, ud) in rows.items():
        poisoned = table1_matrix(lp)
        assert learnable_count(poisoned, 0.5) == pytest.approx(lp)
        # the published #LP are rounded to 0.01: UD from the matrices matches the published UD within that rounding
        lo, hi = (lp - 0.005) / (lp_clean + 0.005), (lp + 0.005) / (lp_clean - 0.005)
        assert lo - 0.0005 <= unlearnable_distance(poisoned, clean) <= hi + 0.0005, method
        assert lo - 0.0005 <= ud <= hi + 0.0005, method
    assert unlearnable_distance(table1_matrix(0.62, 50), table1_matrix(3.32, 50)) == pytest.approx(31 / 166)
    assert round(31 / 166, 3) == 0.187


def test_ud_bad_inputs():
    clean = table1_matrix(3.32)
    with pytest.raises(UserError, match="layer counts"):
        unlearnable_distance(np.zeros((50, 20)), clean)
    with pytest.raises(UserError, match="non-empty"):
        unlearnable_distance(np.zeros((0, 21)), clean)
    with pytest.raises(UserError, match="#LP = 0"):
        unlearnable_distance(clean, np.ones((5, 21)))
    assert not math.isnan(unlearnable_distance(np.zeros((3, 21)), clean))


# ---- both origins from one search, UD's interval (issue 14, items 1-2) ------------------------------------
def test_sal_at_worked_by_hand():
    from uebench.metrics.sal import sal_at

    # the search reached 1.0 (descending) and 2.5 (ascending)
    assert sal_at(2.0, 2.5, 1.0) == pytest.approx(1.0)  # max(0.5, 1.0)
    assert sal_at(3.0, 2.5, 1.0) == pytest.approx(2.0)  # L0 above every loss found: only the drop counts
    assert sal_at(0.5, 2.5, 1.0) == pytest.approx(2.0)  # below every loss found: only the rise
    assert sal_at(1.0, -math.inf, math.inf) == 0.0  # no evaluation ran: SAL 0, as best-of tracking from L0 gives


class BNNet(nn.Module):
    """Conv -> BatchNorm -> linear: eval-mode loss depends on the running statistics, so it differs from any L0
    measured in train mode."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


@pytest.mark.parametrize("mode", ["faithful", "fast"])
def test_both_origins_come_from_one_search_and_differ_by_the_offset(mode):
    torch.manual_seed(0)
    model = BNNet()
    with torch.no_grad():
        model.bn.running_mean.fill_(0.3)
        model.bn.running_var.fill_(2.0)
    data = ProbeData(torch.rand(32, 3, 8, 8), torch.randint(0, 3, (32,)), batch_size=16, augment=False)
    kw = dict(eps=0.05, rounds=3, lr=0.1, mode=mode, seed=0, fast=FastSALConfig(subset=32, anchor=False))
    by_eval = model_sal(model, data, origin="eval", **kw)
    l0_eval = by_eval.origins["eval"]
    for running in (l0_eval + 0.4, l0_eval - 0.4, l0_eval):  # above, below, equal: a known offset
        rec = model_sal(model, data, origin="running", running_loss=running, **kw).to_record()
        assert rec["sal_offset"] == pytest.approx(l0_eval - running, abs=1e-9)
        assert rec["sal_l0_running"] == running and rec["sal_l0_eval"] == pytest.approx(l0_eval, abs=1e-9)
        for layer, r in by_eval.layers.items():
            assert rec["sal_eval"][layer] == pytest.approx(r.sal, abs=1e-9)  # the same search, read at L0(eval)
            assert rec["sal_running"][layer] == pytest.approx(rec["sal"][layer], abs=1e-9)
            # a layer's two SALs differ by at most the offset (|max(a, b) - max(a', b')| <= the shift of L0)
            assert abs(rec["sal_running"][layer] - rec["sal_eval"][layer]) <= abs(rec["sal_offset"]) + 1e-9
    far = model_sal(model, data, origin="running", running_loss=l0_eval + 5.0, **kw).to_record()
    for layer in far["sal"]:  # L0 far above every loss the ball reaches: SAL = L0 - L_min, the offset enters whole
        assert far["sal_running"][layer] - (l0_eval - by_eval.layers[layer].eval_min) == pytest.approx(5.0, abs=1e-6)


def test_bootstrap_interval_covers_ud_and_narrows_with_more_epochs():
    from uebench.metrics import bootstrap_ud

    rng = np.random.default_rng(0)

    def runs(epochs: int, high_clean: int, high_poison: int, layers: int = 8):
        def one(high):
            a = rng.normal(0.2, 0.05, (epochs, layers))
            a[:, :high] += 1.0 + rng.normal(0, 0.05, (epochs, high))
            a[rng.random((epochs, layers)) < 0.15] += 1.0  # cells that flip above beta now and then
            return a

        return one(high_poison), one(high_clean)

    widths = []
    for epochs in (4, 64):
        p, c = runs(epochs, high_clean=4, high_poison=2)
        ud = unlearnable_distance(p, c)
        lo, hi = bootstrap_ud(p, c, n=400, seed=1)
        assert lo <= ud <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2
    for bad in (0, -1, 2.5):
        with pytest.raises(UserError, match="bootstrap size"):
            bootstrap_ud(p, c, n=bad)


def test_sal_probe_refuses_non_finite_settings():
    for kw in (
        {"eps": float("inf")},
        {"eps": float("nan")},
        {"eps": 0.0},
        {"rounds": 0},
        {"origin": "nope"},
        {"lr": float("inf")},
        {"subset": 0},
        {"augment": "twice"},
    ):
        with pytest.raises(UserError):
            SALConfig(**kw)


def memorised_tiny(steps: int = 150) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A model that memorised 32 un-augmented images (random labels): the `cpu` preset's EM run in miniature."""
    torch.manual_seed(0)
    model = TinyResNet()
    images, _ = toy_images(32, seed=2, side=12)
    labels = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(images.float() / 255), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), images, labels


def test_fast_probes_what_faithful_probes_on_a_run_trained_without_augmentation():
    # the probe data is augmented as the run trained: here not at all. Fast's fixed subset used to be cropped and
    # flipped whatever the recipe ("once"), so a memorised model read as highly learnable on crops it never saw
    model, images, labels = memorised_tiny()  # training loss 1.6e-5
    data = ProbeData(images, labels, batch_size=8, augment="none")
    sal = dict(origin="eval", lr=0.01)  # a step that keeps the search inside the memorised basin
    faithful = np.mean(model_sal(model, data, mode="faithful", **sal).values())
    fast = np.mean(model_sal(model, data, mode="fast", fast=FastSALConfig(subset=16), **sal).values())
    old = np.mean(model_sal(model, data, mode="fast", fast=FastSALConfig(subset=16, augment="once"), **sal).values())
    assert faithful < 1e-3 and abs(fast - faithful) < 1e-3  # the same level (1e-7 and 0 here)
    assert old > 0.5  # what the bench recorded before: the loss of crops it never saw (4.3 here)


def test_a_fixed_subset_takes_the_datas_own_augmentation():
    images, labels = toy_images(16, side=12)
    plain = ProbeData(images, labels, augment="none").subset(16, seed=0, augment_once=True)
    assert torch.equal(plain.inputs, ProbeData.prepare(images))  # no augmentation where the run had none
    cropped = ProbeData(images, labels, augment="crop_flip").subset(16, seed=0, augment_once=True)
    assert not torch.equal(cropped.inputs, ProbeData.prepare(images))
    forced = ProbeData(images, labels, augment="none").subset(16, seed=0, augment_once=True, augment="crop_flip")
    assert torch.equal(forced.inputs, cropped.inputs)  # the old "once": crop+flip whatever the data's own
    assert ProbeData(images, labels, augment=True).augment == "crop_flip"  # the old boolean spelling
    with pytest.raises(UserError, match="unknown probe augmentation"):
        ProbeData(images, labels, augment="jitter")


def test_faithful_with_the_frozen_prefix_computed_once_equals_the_plain_search():
    # the reference: the public code's loop, the whole model run for every pass and for each copy's evaluation
    from uebench.metrics.sal import _faithful_layer
    from uebench.metrics.sal_common import (
        SALResult,
        cross_entropy,
        forward_with,
        layer_seed,
        project_to_ball,
        weight_key,
    )

    def plain(model, name, data, loss0, eps, rounds, lr, gen):
        w0 = dict(model.named_parameters())[weight_key(name)].detach()
        copies = {+1.0: w0.clone(), -1.0: w0.clone()}
        lo, hi = math.inf, -math.inf
        for _ in range(rounds):
            for sign in (+1.0, -1.0):
                w = copies[sign].requires_grad_(True)
                for x, y in data.passes(gen):
                    g = torch.autograd.grad(sign * cross_entropy(forward_with(model, name, w, x), y), w)[0]
                    with torch.no_grad():
                        w.sub_(g, alpha=lr)
                copies[sign] = project_to_ball(w.detach(), w0, eps)
            tot, n = {+1.0: 0.0, -1.0: 0.0}, 0
            with torch.no_grad():
                for x, y in data.passes(gen):
                    for sign in tot:
                        tot[sign] += float(cross_entropy(forward_with(model, name, copies[sign], x), y)) * len(y)
                    n += len(y)
            lo, hi = min(lo, tot[+1.0] / n), max(hi, tot[-1.0] / n)
        return SALResult.from_search(name, loss0, hi, lo, rounds)

    model = create_model("resnet18", width=0.125).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    images, labels = toy_images(32, side=32)
    data = ProbeData(images, labels, batch_size=16, augment="crop_flip")
    for name in ("conv1", "layer2.0.shortcut.0", "layer4.1.conv2", "linear"):
        args = (model, name, data, 1.1, 0.05, 2, 0.1)
        a = _faithful_layer(*args, torch.Generator().manual_seed(layer_seed(0, name)), cross_entropy)
        b = plain(*args, torch.Generator().manual_seed(layer_seed(0, name)))
        assert abs(a.eval_max - b.eval_max) <= 1e-6 and abs(a.eval_min - b.eval_min) <= 1e-6


def test_sgd_step_rule_with_one_batch_per_round_is_the_full_batch_rule():
    # a round of the "sgd" rule whose batch holds every sample is one full-batch step of the same size
    from uebench.metrics.fast_sal import _Objective, fast_layer_search, searches

    model, images, labels = trained_tiny(steps=4)
    model.eval()
    x, y = images[:32].float() / 255, labels[:32]
    w0 = dict(model.named_parameters())["linear.weight"].detach()
    parts = searches(_Objective(model, "linear", [x], y, nn.functional.cross_entropy, 512), crossfit=False)
    kw = dict(eps=0.05, rounds=3, step=0.5, tol=0.0)
    full = fast_layer_search(parts, w0, **kw)
    sgd = fast_layer_search(parts, w0, **kw, batch=32, generator=torch.Generator().manual_seed(0))
    assert (sgd.high, sgd.low, sgd.ran) == pytest.approx((full.high, full.low, full.ran), rel=1e-5)


def test_step_rules_choose_the_search_batch():
    # 1,000 training images in batches of 128: a faithful pass makes 7 steps. "steps" makes a pass over a 256-image
    # subset 7 steps too (batches of 36), "sgd" takes the run's batch (2 steps), "full" one step
    from uebench.metrics.fast_sal import _search_batch

    data = ProbeData(torch.zeros(1000, 1), torch.zeros(1000), batch_size=128)
    assert [_search_batch(rule, 256, data) for rule in ("full", "sgd", "steps")] == [None, 128, 36]
    assert _search_batch("steps", 5, data) == 1  # never an empty batch


def test_sgd_step_rule_is_deterministic_and_refuses_unknown_rules():
    model, images, labels = trained_tiny(steps=4)
    data = ProbeData(images[:64], labels[:64], batch_size=4, augment=False)  # 4 SGD steps per half-subset pass

    def run(rule):
        return model_sal(
            model, data, origin="eval", mode="fast", rounds=2, fast=FastSALConfig(subset=32, step_rule=rule)
        )

    assert run("sgd").values() == run("sgd").values()
    assert run("sgd").values() != run("full").values()
    with pytest.raises(UserError, match="unknown fast-SAL step rule 'adam'"):
        FastSALConfig(step_rule="adam")


def test_sal_config_defaults_to_sgd_and_reads_an_old_record_as_the_full_rule():
    from uebench.metrics import SALConfig

    assert SALConfig().fast.step_rule == "sgd" and SALConfig().fast.crossfit is False
    assert SALConfig(step_rule="full").fast.step_rule == "full"
    assert "step_rule" not in SALConfig(step_rule="full").record()  # a bench made before the option keeps its identity
    assert SALConfig().record()["step_rule"] == "sgd"
    old = SALConfig(step_rule="full", crossfit=True).record()  # as a 0.1.0 bench.json holds it
    assert "step_rule" not in old
    assert SALConfig.from_record(old) == SALConfig(step_rule="full", crossfit=True)  # not today's default
    assert SALConfig.from_record(SALConfig().record()) == SALConfig()
    with pytest.raises(UserError, match="unknown fast-SAL step rule"):
        SALConfig(step_rule="adam")


def test_model_sal_defaults_are_sal_configs_and_the_origin_follows_the_running_loss():
    """One source of SAL's defaults: a standalone model_sal measures as a default SALConfig does (the fast estimator,
    its options, eps, rounds and lr); L0 is the running loss where one is given, else the eval loss (the rule the
    training probe meets with SALConfig's "running": every epoch has its running loss)."""
    import dataclasses
    import inspect

    from uebench.metrics.sal_common import default_origin

    params = inspect.signature(model_sal).parameters
    config = SALConfig()
    assert params["mode"].default == config.mode == "fast"
    assert params["eps"].default == config.eps and params["lr"].default == config.lr
    assert params["rounds"].default is config.rounds is None
    assert FastSALConfig() == config.fast  # the fast options model_sal takes without `fast=`
    assert params["origin"].default is None and config.origin == default_origin(running_loss=0.5) == "running"
    assert default_origin(None) == "eval"
    layer = inspect.signature(layer_sal).parameters
    assert layer["origin"].default is None and layer["eps"].default == config.eps and layer["lr"].default == config.lr

    model, images, labels = trained_tiny(steps=2)
    data = ProbeData(images[:32], labels[:32], batch_size=16, augment=False)
    kw = dict(layers=[probed_layers(model)[-1]], seed=0)
    probe = SALConfig(subset=16, rounds=1)  # a default SALConfig but for its size
    standalone = model_sal(model, data, fast=probe.fast, rounds=1, **kw)
    assert standalone.mode == "fast" and standalone.origin == "eval"
    assert standalone.values() == dataclasses.replace(probe, origin="eval").measure(model, data, **kw).values()
    given = model_sal(model, data, fast=probe.fast, rounds=1, running_loss=1.0, **kw)
    assert given.origin == "running" and given.values() == probe.measure(model, data, running_loss=1.0, **kw).values()
