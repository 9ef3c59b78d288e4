"""Training-time defenses: each transforms its input as published, keeps shapes and dtypes, is deterministic for a
seed, refuses bad input with one line, and trains end to end."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from uebench.cli import main as cli_main
from uebench.core.errors import UserError
from uebench.data import ImageDataset
from uebench.defenses import DEFENSES, _ops, create_defense

BATCH_DEFENSES = ["cutout", "mixup", "cutmix", "ueraser", "ueraser-lite", "ueraser-jpeg", "at"]
PREPROCESS_DEFENSES = ["jpeg", "gray", "bdr", "gaussian", "jpeg-gray"]
C = 10


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(n: int = 16, seed: int = 0, h: int = 32, w: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    return torch.rand(n, 3, h, w, generator=g), torch.randint(0, C, (n,), generator=g)


def dataset(n: int = 8, seed: int = 0) -> ImageDataset:
    g = gen(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return ImageDataset("toy", "train", images, torch.arange(n) % C, [str(i) for i in range(C)])


def small_model(bn: bool = False, seed: int = 0, pool: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    layers = (
        [nn.Conv2d(3, 8, 3, padding=1)]
        + ([nn.BatchNorm2d(8)] if bn else [])
        + [nn.ReLU(), nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(8 * pool * pool, C)]
    )
    return nn.Sequential(*layers)


def run_batch(name: str, x, y, seed: int = 0, model=None, **params):
    d = create_defense(name, **params)
    d.prepare(dataset())  # learns the number of classes
    if model is None and name in ("ueraser", "ueraser-jpeg", "at"):
        model = small_model()
    return d.batch(x.clone(), y.clone(), model=model, generator=gen(seed))


# ---- registry and validation ---------------------------------------------------------------------------------
def test_registry_lists_every_defense():
    assert set(DEFENSES.names()) == {
        "jpeg",
        "gray",
        "bdr",
        "gaussian",
        "cutout",
        "mixup",
        "cutmix",
        "ueraser",
        "ueraser-lite",
        "ueraser-jpeg",
        "at",
        "coin",
        "jpeg-gray",
        "channel-norm",
        "hist-eq",
        "lab-whiten",
        "yuv-whiten",
        "color-shift",
        "ortho-proj",
    }
    for name in DEFENSES.names():
        d = create_defense(name)
        assert d.name == name and d.kind in ("preprocess", "augment", "training") and d.source and d.description
        assert set(d.describe()) >= {"name", "kind", "params", "source"}


def test_published_defaults():
    assert create_defense("jpeg").config.quality == 10
    assert create_defense("bdr").config.bits == 2
    blur, apbench = create_defense("gaussian").config, create_defense("gaussian", setting="apbench").config
    assert (blur.setting, blur.kernel_size, blur.sigma) == ("blur", 3, 1.0)
    assert (apbench.kernel_size, apbench.sigma) == (3, 0.1)
    assert create_defense("cutout").config.length == 16
    assert create_defense("mixup").config.alpha == 1.0 and create_defense("cutmix").config.alpha == 1.0
    assert create_defense("ueraser").config.repeats == 5 and create_defense("ueraser-lite").config.repeats == 1
    at = create_defense("at").config
    assert (at.eps, at.step_size, at.steps, at.start) == (8 / 255, 2 / 255, 10, "uniform")


def test_unknown_defense_and_bad_params_are_user_errors():
    with pytest.raises(UserError, match="unknown defense 'nope'; valid: at, bdr"):
        create_defense("nope")
    with pytest.raises(UserError, match=r"has no parameter qualty; did you mean 'quality'\? valid: quality, test"):
        create_defense("jpeg", qualty=5)
    for name, params in [
        ("jpeg", {"quality": 0}),
        ("bdr", {"bits": 9}),
        ("cutmix", {"prob": 2}),
        ("at", {"start": "x"}),
        ("mixup", {"alpha": -1}),
        ("ueraser", {"repeats": 0}),
        ("ueraser", {"contrast_roughness": [0.7]}),
        ("cutout", {"length": "big"}),
        ("gray", {"test": "yes"}),
        ("gaussian", {"setting": "paper"}),
        ("gaussian", {"sigma": 0}),
        ("gaussian", {"kernel_size": 4}),
    ]:
        with pytest.raises(UserError, match=f"defense '{name}'"):
            create_defense(name, **params)


# ---- ISS pre-processing (once, uint8 -> uint8) ----------------------------------------------------------------
def _smooth_images(n: int = 2) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    img = torch.stack([xx * 4 + yy * 2, (255 - xx * 6).clamp(0, 255), (yy * 7).clamp(0, 255)]).to(torch.uint8)
    return img[None].repeat(n, 1, 1, 1)


def test_jpeg_really_quantises():
    d = create_defense("jpeg")
    noise = dataset(4).images
    out = d.filter(noise)
    assert out.dtype == torch.uint8 and out.shape == noise.shape
    diff = (out.float() - noise.float()).abs().mean()
    assert diff > 20  # quality 10 destroys high-frequency noise
    f = out.float()
    dx = (f[..., 1:] - f[..., :-1]).abs()  # dx[..., j]: between columns j and j+1
    across = dx[..., 7::8].mean()  # 8x8 block boundaries
    inside = torch.cat([dx[..., j::8] for j in range(7)], -1).mean()
    assert across > 1.2 * inside  # blocking: the 8x8 DCT grid shows
    noise_dx = (noise.float()[..., 1:] - noise.float()[..., :-1]).abs().mean()
    assert inside < 0.5 * noise_dx  # high frequencies inside blocks removed
    smooth = _smooth_images()
    s_out = d.filter(smooth)
    assert 0 < (s_out.float() - smooth.float()).abs().mean() < 12  # a smooth image survives, slightly changed
    again = d.filter(out)
    assert (again.float() - out.float()).abs().mean() < 0.1 * diff  # close to idempotent


def test_jpeg_matches_pil_per_image():
    ds = dataset(3)
    out = create_defense("jpeg", quality=25).filter(ds.images)
    img = Image.fromarray(ds.images[1].permute(1, 2, 0).numpy())
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=25)
    ref = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1)
    assert torch.equal(out[1], ref)


def test_grayscale_equal_channels_pil_luma():
    ds = dataset(4)
    out = create_defense("gray").filter(ds.images)
    assert out.dtype == torch.uint8 and out.shape == ds.images.shape
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    for i in range(4):
        ref = np.asarray(Image.fromarray(ds.images[i].permute(1, 2, 0).numpy()).convert("L"))
        assert torch.equal(out[i, 0], torch.from_numpy(ref.copy()))


def test_bdr_has_exactly_four_levels():
    images = torch.arange(256, dtype=torch.uint8).repeat(3 * 4 * 4 * 2)[: 2 * 3 * 32 * 32].view(2, 3, 32, 32)
    out = create_defense("bdr").filter(images)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert sorted(out.unique().tolist()) == [0, 64, 128, 192]
    assert (out <= images).all() and ((images - out) < 64).all()


def test_gaussian_apbench_setting_is_identity_on_uint8_default_is_a_real_blur():
    ds = dataset(2)
    apbench = create_defense("gaussian", setting="apbench")
    assert torch.equal(apbench.filter(ds.images), ds.images)  # sigma 0.1: neighbour weights e^-50
    blurred = create_defense("gaussian").filter(ds.images)
    assert blurred.float().std() < 0.8 * ds.images.float().std()
    flat = torch.full((1, 3, 32, 32), 77, dtype=torch.uint8)
    assert torch.equal(create_defense("gaussian").filter(flat), flat)
    # hand-worked: one bright pixel under kernel 3, sigma 1: weights (0.274, 0.452, 0.274) per axis
    dot = torch.zeros(1, 1, 5, 5, dtype=torch.uint8)
    dot[0, 0, 2, 2] = 200
    out = create_defense("gaussian").filter(dot)[0, 0]
    assert (out[2, 2], out[2, 1], out[1, 1], out[0, 0]) == (41, 25, 15, 0)


def test_gaussian_records_the_setting_that_ran_and_apbench_records_as_before():
    assert create_defense("gaussian").params() == {"setting": "blur", "kernel_size": 3, "sigma": 1.0, "test": False}
    # the only behaviour before `setting` existed: its record (and so a bench run's key) is unchanged
    assert create_defense("gaussian", setting="apbench").params() == {"kernel_size": 3, "sigma": 0.1, "test": False}
    assert create_defense("gaussian", sigma=2.0).params()["sigma"] == 2.0


@pytest.mark.parametrize("name", PREPROCESS_DEFENSES)
def test_preprocess_filters_train_not_test_by_default(name):
    ds = dataset(4)
    d = create_defense(name)
    train = d.prepare(ds)
    assert train.images.dtype == torch.uint8 and train.images.shape == ds.images.shape
    assert torch.equal(train.labels, ds.labels) and torch.equal(train.indices, ds.indices)
    assert not torch.equal(train.images, ds.images) and train.meta["defense"] == name
    assert d.prepare_test(ds) is ds
    both = create_defense(name, test=True)
    assert torch.equal(both.prepare_test(ds).images, train.images)


# ---- per-batch augmentations ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BATCH_DEFENSES)
def test_batch_defenses_keep_shapes_dtypes_range_and_are_deterministic(name):
    x, y = batch(8)
    out1, y1 = run_batch(name, x, y, seed=3)
    out2, y2 = run_batch(name, x, y, seed=3)
    out3, _ = run_batch(name, x, y, seed=4)
    assert out1.shape == x.shape and out1.dtype == x.dtype
    assert 0 <= out1.min() and out1.max() <= 1
    assert torch.equal(out1, out2) and torch.equal(y1, y2)
    assert not torch.equal(out1, out3)
    assert not torch.equal(out1, x)
    if name in ("mixup", "cutmix"):
        assert y1.shape == (8, C) and y1.dtype == torch.float32
    else:
        assert torch.equal(y1, y)


def test_cutout_zeroes_a_16x16_square_clipped_at_borders():
    x = torch.ones(64, 3, 32, 32)
    out, _ = run_batch("cutout", x, torch.zeros(64, dtype=torch.long))
    zero = out == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # same square in every channel
    clipped = 0
    for z in zero[:, 0]:
        rows, cols = z.any(1).nonzero().squeeze(1), z.any(0).nonzero().squeeze(1)
        assert len(rows) and len(cols)
        assert z.sum() == len(rows) * len(cols)  # a rectangle...
        assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(cols)
        assert len(rows) <= 16 and len(cols) <= 16  # ...of at most 16x16
        for idx, n in ((rows, len(rows)), (cols, len(cols))):
            if n < 16:  # shorter only where the square leaves the image
                assert idx.min() == 0 or idx.max() == 31
                clipped += 1
    assert 0 < clipped  # 64 draws: some squares hit a border
    assert (out[~zero] == 1).all()


def _unique_class_batch(n: int = 8, seed: int = 0):
    """Images whose labels are all different, so a label distribution names the images that were mixed."""
    g = gen(seed)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randperm(C, generator=g)[:n]


def test_mixup_labels_and_images_are_the_same_convex_mixture():
    x, y = _unique_class_batch()
    out, soft = run_batch("mixup", x, y, seed=1)
    assert (soft >= 0).all() and torch.allclose(soft.sum(1), torch.ones(len(x)))
    image_of_class = {int(c): i for i, c in enumerate(y)}
    mixed = 0
    for i in range(len(x)):
        weights = soft[i].nonzero().squeeze(1)
        assert 1 <= len(weights) <= 2 and int(y[i]) in weights.tolist()
        expected = sum(soft[i, c] * x[image_of_class[int(c)]] for c in weights.tolist())
        assert torch.allclose(out[i], expected, atol=1e-5)
        mixed += len(weights) == 2
    assert mixed >= len(x) - 2  # almost every image has a partner (a permutation may fix a few)


def test_mixup_one_lambda_per_batch_option():
    x, y = _unique_class_batch()
    _, soft = run_batch("mixup", x, y, seed=1, per_sample=False)
    own = soft.gather(1, y.view(-1, 1)).squeeze(1)
    moved = own[own < 1]  # images whose partner is another image
    assert len(moved) >= 2 and torch.allclose(moved, moved[0].expand_as(moved))
    _, soft = run_batch("mixup", x, y, seed=1)
    own = soft.gather(1, y.view(-1, 1)).squeeze(1)
    assert len(own[own < 1].unique()) > 1  # the default draws one lambda per image


def test_cutmix_label_weight_is_the_pasted_area_fraction():
    x, y = _unique_class_batch(8, seed=2)
    image_of_class = {int(c): i for i, c in enumerate(y)}
    out, soft = run_batch("cutmix", x, y, seed=5)
    assert (soft >= 0).all() and torch.allclose(soft.sum(1), torch.ones(len(x)))
    pasted_any = 0
    for i in range(len(x)):
        others = [c for c in soft[i].nonzero().squeeze(1).tolist() if c != int(y[i])]
        if not others:
            assert torch.equal(out[i], x[i]) or torch.allclose(soft[i, y[i]], torch.tensor(1.0))
            continue
        (c,) = others
        j = image_of_class[c]
        from_j = (out[i] == x[j]).all(0) & (out[i] != x[i]).any(0)
        from_i = (out[i] == x[i]).all(0)
        assert (from_i | from_j).all()  # every pixel comes from one of the two images
        rows, cols = from_j.any(1).nonzero().squeeze(1), from_j.any(0).nonzero().squeeze(1)
        assert from_j.sum() == len(rows) * len(cols)  # a box
        assert torch.isclose(soft[i, c], from_j.float().mean(), atol=1e-6)
        assert torch.isclose(soft[i, y[i]], 1 - from_j.float().mean(), atol=1e-6)
        pasted_any += 1
    assert pasted_any >= 4


def test_mix_defenses_need_the_class_count():
    x, y = batch(4)
    with pytest.raises(RuntimeError, match="prepare"):
        create_defense("mixup").batch(x, y, generator=gen())


# ---- UEraser -----------------------------------------------------------------------------------------------
def test_plasma_in_unit_range_and_roughness_adds_detail():
    p = _ops.plasma(64, 32, 28, torch.tensor([0.3, 0.9]).repeat_interleave(32), gen(), "cpu")
    assert p.shape == (64, 32, 28) and p.min() >= 0 and p.max() <= 1
    detail = (p[:, 1:] - p[:, :-1]).abs().mean(dim=(1, 2))
    assert detail[32:].mean() > 2 * detail[:32].mean()
    assert p.std(dim=(1, 2)).min() > 0.01  # not flat


def test_ueraser_ops_stay_in_range():
    x, _ = batch(24)
    g = gen(1)
    for out in (
        _ops.plasma_brightness(x, torch.full((24,), 0.5), torch.full((24,), 1.0), g),
        _ops.plasma_contrast(x, torch.full((24,), 0.5), g),
        _ops.channel_shuffle(x, g),
        _ops.trivial_augment(x, g),
        _ops.equalize(x),
        _ops.auto_contrast(x),
    ):
        assert out.shape == x.shape and out.dtype == x.dtype and out.min() >= 0 and out.max() <= 1
    shuffled = _ops.channel_shuffle(x, g)
    assert torch.equal(shuffled.sort(1).values, x.sort(1).values)  # a permutation of the channels


def test_ueraser_max_trains_on_the_highest_loss_draw():
    x, y = batch(12)
    model = small_model()
    d = create_defense("ueraser")
    cands = d.candidates(x, gen(7))
    assert cands.shape == (5, *x.shape)
    with torch.no_grad():
        losses = torch.stack([F.cross_entropy(model(c), y, reduction="none") for c in cands])
    expected = cands[losses.argmax(0), torch.arange(len(x))]
    out, y_out = d.batch(x, y, model=model, generator=gen(7))
    assert torch.allclose(out, expected) and torch.equal(y_out, y)
    chosen_loss = F.cross_entropy(model(out), y, reduction="none")
    assert torch.allclose(chosen_loss, losses.max(0).values, atol=1e-5)
    assert (losses.max(0).values > losses.min(0).values).all()  # the draws differ, so choosing matters


def test_ueraser_max_scoring_leaves_batchnorm_statistics_and_mode_alone():
    x, y = batch(8)
    model = small_model(bn=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    create_defense("ueraser").batch(x, y, model=model, generator=gen())
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_ueraser_max_warm_up_then_one_draw(monkeypatch):
    """APBench's repeat_epoch: the max-loss draw for the first max_epochs epochs, one draw after."""
    x, y = batch(8)
    model = small_model()
    d = create_defense("ueraser", max_epochs=2)
    scored = []
    real = d.scores
    monkeypatch.setattr(d, "scores", lambda *a, **k: scored.append(d.epoch) or real(*a, **k))
    for epoch in range(4):
        d.begin_epoch(epoch)
        d.batch(x, y, model=model, generator=gen(epoch))
    assert scored == [0, 1]
    lite = create_defense("ueraser", max_epochs=0)
    lite.begin_epoch(0)
    assert torch.equal(lite.batch(x, y, model=None, generator=gen(3))[0], lite.augment(x, gen(3)))
    # unset, the new options stay out of the recorded settings: a run's key is what it was before they existed
    assert (
        "max_epochs" not in create_defense("ueraser").params()
        and create_defense("ueraser", max_epochs=50).params()["max_epochs"] == 50
    )


def test_ueraser_jpeg_places_the_compression_as_named():
    from uebench.defenses.jpeg import jpeg_roundtrip

    x, y = batch(6)
    off = {"p_brightness": 0.0, "p_contrast": 0.0, "p_shuffle": 0.0, "trivial_augment": False, "repeats": 1}
    u8 = x.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)
    for place in ("before", "after"):  # with every op off, either is exactly one JPEG-10 round trip
        d = create_defense("ueraser", jpeg=place, jpeg_quality=10, **off)
        assert torch.equal(d.augment(x, gen()), jpeg_roundtrip(u8, 10).float() / 255)
    d = create_defense("ueraser-jpeg", **off)  # APBench's: a quality drawn per batch in [10, 100)
    outs = {tuple(d.augment(x, gen(s)).flatten()[:64].tolist()) for s in range(6)}
    assert len(outs) > 1 and d.config.p_brightness == 0.0  # the quality varies with the stream
    assert create_defense("ueraser-jpeg").config.p_brightness == 0.8
    with pytest.raises(UserError, match="jpeg must be one of"):
        create_defense("ueraser", jpeg="middle")


# ---- adversarial training --------------------------------------------------------------------------------
def test_at_inner_attack_raises_the_loss_within_budget():
    x, y = batch(32)
    model = small_model(bn=True, pool=32).train()  # no pooling: the input gradient is informative at init
    d = create_defense("at")
    x_adv = d.attack(model, x, y, generator=gen(2))
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())  # the attack leaves parameter gradients alone
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    model.eval()
    with torch.no_grad():
        clean, adv = F.cross_entropy(model(x), y, reduction="none"), F.cross_entropy(model(x_adv), y, reduction="none")
    assert adv.mean() > clean.mean() * 1.05
    assert (adv > clean).float().mean() > 0.9
    x_adv2, _ = d.batch(x, y, model=model.train(), generator=gen(2))
    assert torch.equal(x_adv, x_adv2)  # deterministic for a seed
    one_step = create_defense("at", steps=1, start="none").attack(model, x, y)
    with torch.no_grad():
        one = F.cross_entropy(model.eval()(one_step), y)
    assert adv.mean() >= one - 1e-4  # ten steps do at least as well as one


# ---- command line and training ----------------------------------------------------------------------------
TINY = ["--data-option", "n_train=128", "--data-option", "n_test=64", "--width", "0.125", "--epochs", "1", "--quiet"]


def test_cli_unknown_defense_exits_2_with_one_line(tmp_path, capsys):
    assert cli_main(["train", "--defense", "nope", "--out", str(tmp_path / "r"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown defense 'nope'" in err[0] and "jpeg" in err[0]
    assert (
        cli_main(["train", "--defense", "jpeg", "--defense-option", "qualty=5", "--out", str(tmp_path / "r"), *TINY])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "qualty" in err[0]
    assert not (tmp_path / "r").exists()  # refused before anything was written


@pytest.mark.parametrize("name", ["mixup", "jpeg"])
def test_cli_one_epoch_with_defense(tmp_path, capsys, name):
    import json

    out = tmp_path / name
    assert cli_main(["train", "--defense", name, "--out", str(out), *TINY]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["defense"] == name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_done"] == 1


def test_cli_lists_defenses(capsys):
    from uebench.cli import _Parser
    from uebench.cli import defenses as command

    parser = _Parser(prog="uebench")
    command.register(parser.add_subparsers(parser_class=_Parser))
    args = parser.parse_args(["defenses"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    for name in DEFENSES.names():
        assert name in text


@pytest.mark.parametrize("name", ["at", "ueraser", "cutmix", "coin", "hist-eq", "ortho-proj"])
def test_trainer_runs_each_kind_of_batch_defense_deterministically(name):
    from uebench.training.trainer import TrainConfig, train

    g = gen(0)
    labels = torch.arange(64) % 4
    images = (torch.rand(64, 3, 16, 16, generator=g) * 255).to(torch.uint8)
    ds = ImageDataset("toy", "train", images, labels, ["a", "b", "c", "d"])
    config = TrainConfig(
        model="resnet18", width=0.125, recipe="quick", epochs=1, batch_size=32, defense=name, precision="fp32"
    )
    a = train(config, train_set=ds, test_set=ds, progress=False)
    b = train(config, train_set=ds, test_set=ds, progress=False)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
