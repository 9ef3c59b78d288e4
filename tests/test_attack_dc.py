"""DC (DeepConfuse): budget on the baked bytes, determinism, the generator's bi-level objective, generator
checkpoints (save -> load -> the same poison; bad files refused) and refusals. Everything runs on 96 tiny
`scenes` images with a 4-channel U-Net and a quarter-width victim, so the file takes seconds on two cores."""

from __future__ import annotations

import pytest
import torch

from uebench.attacks import ATTACKS, craft, make_config
from uebench.attacks.dc import DCConfig, UNet, load_generator, make_classifier, make_generator, unrolled_clean_loss
from uebench.data import load
from uebench.errors import UserError

TINY = {"trials": 2, "cls_epochs": 2, "batch_size": 32, "gen_width": 4, "gen_depth": 2, "cls_width": 0.25, "gen_lr": 1e-2}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def scenes():
    return load("scenes", None, "train", n_train=96, n_test=16)


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
    # 4 victim passes (pseudo-update, clean loss of theta', backward through the update, the victim's own
    # step) and 1 1/3 generator passes per epoch, plus the final forward of the generator
    assert meta.epoch_equivalents == pytest.approx(epochs * (4 + 4 / 3) + 1 / 3)
    assert meta.epoch_equivalents > 5 * epochs


def test_deterministic_for_a_seed(trained, scenes):
    again = craft("dc", scenes, seed=0, progress=False, **TINY)
    assert torch.equal(again.images, trained[0].images)
    other = craft("dc", scenes, seed=1, progress=False, **TINY)
    assert not torch.equal(other.images, trained[0].images)


def test_permuted_dataset_gives_the_permuted_poison(trained, scenes):
    perm = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(3))
    poison = craft("dc", scenes.subset(perm), seed=0, progress=False, **TINY)
    assert torch.equal(poison.indices, scenes.indices[perm])
    assert torch.equal(poison.images, trained[0].images[perm])


def test_checkpoint_round_trip_gives_the_same_poison(trained, scenes):
    poison, path = trained
    again = craft("dc", scenes, seed=5, progress=False, generator=str(path), **TINY)  # any seed: no training
    assert torch.equal(again.images, poison.images)
    assert again.meta.extra["trained"] is False
    assert again.meta.epoch_equivalents < 1  # one forward pass of the generator


def test_objective_goes_up(scenes):
    """The generator ascends the clean loss of the pseudo-updated victim: after training, one SGD step on its
    poison helps fresh victims less on clean data than one step on an untrained generator's poison does."""
    cfg = make_config(ATTACKS.get("dc"), "paper", **{**TINY, "trials": 3, "unroll_lr": 0.1})
    attack = ATTACKS.get("dc")(cfg)
    x, y = scenes.images.float() / 255, scenes.labels
    learnt, _ = attack._train(x, y, scenes, 0, torch.device("cpu"), False)
    untrained = make_generator(cfg, 3, 0)

    def clean_loss_after_step(gen, trial):
        torch.manual_seed(0)
        clf = make_classifier(cfg, scenes, 100, trial)
        gen.eval()
        return float(unrolled_clean_loss(gen, clf, x, y, cfg.eps, cfg.unroll_lr))

    after = [clean_loss_after_step(learnt, t) for t in range(4)]
    before = [clean_loss_after_step(untrained, t) for t in range(4)]
    assert sum(after) > sum(before)


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
    assert {"dconv_down4.3.weight", "dconv_up3.0.weight", "dconv_up1.4.running_var", "conv_last.0.weight", "conv_last.1.bias"} <= names
    assert sum(p.numel() for p in UNet(3, 64, 3).parameters()) == 7_788_681  # the public UNet(3)'s size
    out = UNet(1, 4, 3).eval()(torch.rand(2, 1, 28, 28))  # MNIST-sized: padded inside, cropped back
    assert out.shape == (2, 1, 28, 28) and out.abs().max() < 1


@pytest.mark.parametrize(
    "params, match",
    [
        ({"classifier": "nope"}, "unknown model 'nope'"),
        ({"trials": -1}, "trials must be an integer >= 0"),
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
    assert (c.gen_width, c.gen_depth, c.classifier, c.eps) == (64, 3, "cnn5", 8 / 255)
    fast = make_config(ATTACKS.get("dc"), "fast")
    assert fast.gen_width < c.gen_width and fast.trials < c.trials
