"""DC (DeepConfuse): budget on the baked bytes, determinism, the generator's bi-level objective, generator
checkpoints (save -> load -> the same poison; bad files refused) and refusals. Everything runs on 96 tiny
`scenes` images with a 4-channel U-Net and a quarter-width victim, so the file takes seconds on two cores."""

from __future__ import annotations

import pytest
import torch

from uebench.attacks import ATTACKS, craft, make_config
from uebench.attacks.dc import (
    ConfuseCNN,
    ConfuseVGG,
    DCConfig,
    UNet,
    generator_step,
    load_generator,
    make_classifier,
    make_generator,
    unrolled_clean_loss,
    victim_step,
)
from uebench.core.errors import UserError
from uebench.data import load

TINY = {
    "trials": 2,
    "cls_epochs": 2,
    "batch_size": 32,
    "gen_width": 4,
    "gen_depth": 2,
    "cls_width": 0.25,
    "gen_lr": 1e-2,
}


@pytest.fixture(scope="module")
def scenes():
    return load("scenes", None, "train", n_train=96, n_test=16, difficulty="standard")  # the measured images


@pytest.fixture(scope="module")
def trained(scenes, tmp_path_factory):
    """A poison from a generator trained here, and that generator's checkpoint."""
    path = tmp_path_factory.mktemp("dc") / "gen.safetensors"
    poison = craft("dc", scenes, seed=0, progress=False, save_generator=str(path), **TINY)
    return poison, path


def baked_delta(poison, ds) -> torch.Tensor:
    return poison.images.float() - ds.images[poison.indices].float()


def test_budget_held_on_baked_bytes(trained, scenes):
    poison, _ = trained
    d = baked_delta(poison, scenes)
    assert d.abs().max() <= 8  # Linf 8/255 after quantisation
    assert d.abs().mean() > 1  # and the generator's noise is really there
    meta = poison.meta
    assert meta.norm == "linf" and meta.budget == pytest.approx(8 / 255)
    assert meta.extra["trained"] and len(meta.extra["objective_history"]) == TINY["trials"]


def test_compute_counts_the_unrolled_step(trained):
    meta = trained[0].meta
    epochs = TINY["trials"] * TINY["cls_epochs"]
    # 5 victim passes (pseudo-update 1, clean loss of theta' 1, the second-order backward through both 2, the
    # victim's own step 1) and 1 1/3 generator passes per epoch, plus the final forward of the generator
    assert meta.epoch_equivalents == pytest.approx(epochs * (5 + 4 / 3) + 1 / 3)
    assert meta.extra["victim_passes"] == 5 * epochs


def test_deterministic_for_a_seed(trained, scenes):
    again = craft("dc", scenes, seed=0, progress=False, **TINY)
    assert torch.equal(again.images, trained[0].images)


def test_permuted_dataset_gives_the_permuted_delta(scenes):
    cls = ATTACKS.get("dc")
    attack = cls(make_config(cls, "paper", **{**TINY, "trials": 1, "cls_epochs": 1}))
    perm = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(3))
    straight = attack.perturb(scenes, seed=0, progress=False).delta
    permuted = attack.perturb(scenes.subset(perm), seed=0, progress=False).delta
    assert torch.equal(permuted, straight[perm])  # row i is image i's noise, whatever order it came in


def test_checkpoint_round_trip_gives_the_same_poison(trained, scenes):
    poison, path = trained
    again = craft("dc", scenes, seed=5, progress=False, generator=str(path), **TINY)  # any seed: no training
    assert torch.equal(again.images, poison.images)
    assert again.meta.extra["trained"] is False
    assert again.meta.epoch_equivalents < 1  # one forward pass of the generator


def test_objective_goes_up(scenes):
    """Generator steps ascend the clean loss of the pseudo-updated victim (through the unrolled SGD step):
    against a victim that has started learning, that loss rises well above the untrained generator's."""
    cfg = DCConfig(gen_width=4, gen_depth=2, victim="vgg11", vgg_bottleneck=None, cls_width=0.125)
    x, y = scenes.images[:48].float() / 255, scenes.labels[:48]
    victim = make_classifier(cfg, scenes, 0, 0).train()
    opt = torch.optim.SGD(victim.parameters(), lr=0.05)
    losses = [victim_step(victim, opt, x, y) for _ in range(8)]
    assert losses[-1] < 0.5 * losses[0]  # the victim learns, so its gradients carry signal
    gen = make_generator(cfg, 3, 0).train()
    start = float(unrolled_clean_loss(gen, victim, x, y, cfg.eps, 0.05).detach())
    gen_opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in victim.state_dict().items() if v.is_floating_point()}
    objective = [generator_step(gen, gen_opt, victim, x, y, cfg.eps, 0.05) for _ in range(8)]
    end = float(unrolled_clean_loss(gen, victim, x, y, cfg.eps, 0.05).detach())
    assert objective[0] == pytest.approx(start)
    assert end > 1.05 * start and end > max(objective[:4])  # measured: +11%
    params = dict(victim.named_parameters())
    assert all(torch.equal(params[k], v) for k, v in before.items() if k in params)  # the pseudo-update is imaginary


def test_corrupt_checkpoint_refused(scenes, tmp_path):
    bad = tmp_path / "gen.safetensors"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(UserError, match="neither a uebench safetensors file nor a torch state dict"):
        craft("dc", scenes, progress=False, generator=str(bad), **TINY)
    with pytest.raises(UserError, match="not found"):
        craft("dc", scenes, progress=False, generator=str(tmp_path / "missing.safetensors"), **TINY)


def test_wrong_architecture_refused(trained, scenes):
    _, path = trained
    with pytest.raises(UserError, match=r"gen_width=8.*saved for 3-channel images with gen_width=4, gen_depth=2"):
        craft("dc", scenes, progress=False, generator=str(path), **{**TINY, "gen_width": 8})


def test_public_code_state_dict_loads(tmp_path):
    """A plain torch state dict with the public UNet(3)'s names (DataParallel prefix included) loads."""
    gen = UNet(3, 4, 2)
    torch.save({f"module.{k}": v for k, v in gen.state_dict().items()}, tmp_path / "atk.pth")
    loaded = load_generator(tmp_path / "atk.pth", 3, DCConfig(gen_width=4, gen_depth=2))
    assert all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(), loaded.state_dict().values()))
    state = gen.state_dict()
    state["conv_last.0.weight"].fill_(float("nan"))
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(UserError, match="NaN or infinite"):
        load_generator(tmp_path / "nan.pth", 3, DCConfig(gen_width=4, gen_depth=2))
    with pytest.raises(UserError, match="does not fit"):
        load_generator(tmp_path / "atk.pth", 3, DCConfig(gen_width=4, gen_depth=3))


def test_public_unet_names_and_any_image_size():
    names = set(UNet(3, 64, 3).state_dict())
    assert {
        "dconv_down4.3.weight",
        "dconv_up3.0.weight",
        "dconv_up1.4.running_var",
        "conv_last.0.weight",
        "conv_last.1.bias",
    } <= names
    assert sum(p.numel() for p in UNet(3, 64, 3).parameters()) == 7_788_681  # the public UNet(3)'s size
    out = UNet(1, 4, 3).eval()(torch.rand(2, 1, 28, 28))  # MNIST-sized: padded inside, cropped back
    assert out.shape == (2, 1, 28, 28) and out.abs().max() < 1


@pytest.mark.parametrize(
    "params, match",
    [
        ({"victim": "nope"}, "unknown victim 'nope'; valid: cnn5 .*vgg11 .*resnet18"),
        ({"victim": None}, "parameter victim must be a string"),
        ({"vgg_bottleneck": 0}, r"vgg_bottleneck must be a whole number or null in \[1,"),
        ({"classifier": "cnn5"}, "no parameter classifier"),  # the victim's old name
        ({"trials": -1}, r"trials must be a whole number in \[0,"),
        ({"gen_lr": 0.0}, "gen_lr must be a positive number"),
        ({"eps": 2.0}, "outside"),
        ({"bogus": 1}, "no parameter bogus"),
    ],
)
def test_bad_params_refused(scenes, params, match):
    with pytest.raises(UserError, match=match):
        craft("dc", scenes, progress=False, **{**TINY, **params})


def test_paper_preset_is_the_paper():
    c = make_config(ATTACKS.get("dc"), "paper")
    assert (c.trials, c.cls_epochs, c.batch_size, c.cls_lr, c.gen_lr) == (500, 20, 64, 0.01, 1e-4)
    assert (c.gen_width, c.gen_depth, c.victim, c.eps) == (64, 3, "cnn5", 8 / 255)
    fast = make_config(ATTACKS.get("dc"), "fast")
    assert fast.gen_width < c.gen_width and fast.trials < c.trials
    # fast: the public code's VGG-11 without its 2-unit bottleneck, which learns too slowly in a few epochs
    assert (fast.victim, fast.vgg_bottleneck) == ("vgg11", None)


@pytest.mark.parametrize(
    "victim, variant, named",
    [
        ("cnn5", "paper (cnn5 victim)", "cnn5 (the paper's 5-conv CNN)"),
        ("vgg11", "public-code (vgg11 victim)", "vgg11 (the public code's), 2-unit bottleneck"),
    ],
)
def test_each_victim_crafts_and_is_named(scenes, victim, variant, named):
    """Both victims build and train a generator, and the poison's metadata says which one ran."""
    poison = craft("dc", scenes, seed=0, progress=False, **{**TINY, "trials": 1, "cls_epochs": 1, "victim": victim})
    assert baked_delta(poison, scenes).abs().max() <= 8
    meta = poison.meta
    assert meta.params["victim"] == victim and meta.extra["victim"] == named and meta.variant == variant
    assert meta.extra["trained"] and len(meta.extra["objective_history"]) == 1
    net = make_classifier(make_config(ATTACKS.get("dc"), "paper", victim=victim), scenes, 0, 0)
    assert isinstance(net, ConfuseCNN if victim == "cnn5" else ConfuseVGG)


def test_vgg11_victim_is_the_public_codes():
    """The public code's create_net(): VGG-11 with BatchNorm and biased convs, a 1x1 conv to 2 units, Linear(2, 10)."""
    net = ConfuseVGG(10, 3, 1.0)
    assert sum(p.numel() for p in net.parameters()) == 9_227_040  # the public VGG('VGG11')'s size
    bottleneck = net.features[-1]
    assert isinstance(bottleneck, torch.nn.Conv2d) and (bottleneck.in_channels, bottleneck.out_channels) == (512, 2)
    assert (net.classifier.in_features, net.classifier.out_features) == (2, 10)
    assert all(m.bias is not None for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    plain = ConfuseVGG(7, 1, 0.25, bottleneck=None)
    assert plain.classifier.in_features == 128 and plain(torch.rand(2, 1, 28, 28)).shape == (2, 7)


def test_loaded_generator_names_no_victim(trained, scenes):
    _, path = trained
    poison = craft("dc", scenes, seed=0, progress=False, generator=str(path), **TINY)
    assert poison.meta.extra["victim"] is None and poison.meta.variant == "pretrained generator"
