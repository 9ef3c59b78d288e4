"""The shortcut probe: does the trained model read the poison, the content, or both?"""

from __future__ import annotations

from dataclasses import replace

import torch

from uebench import data
from uebench.poisons.poison import Poison, PoisonMeta
from uebench.training.shortcut import other_class_partners, shortcut_probes, transplant
from uebench.training.trainer import TrainConfig, splits_and_probes, train

OPTIONS = {"n_train": 512, "n_test": 128, "difficulty": "standard"}  # the images the measured numbers are of


def patch_poison(ds: data.ImageDataset, strength: int = 64) -> Poison:
    """A blatant class-wise shortcut in the manner of LSP: each class's own random +-strength 4x4 patch, tiled over
    every image of that class (tiling keeps it readable after a random crop)."""
    g = torch.Generator().manual_seed(0)
    patches = (torch.randint(0, 2, (ds.num_classes, 3, 4, 4), generator=g) * 2 - 1) * strength
    _, h, w = ds.shape
    tiled = patches.repeat(1, 1, h // 4, w // 4)
    images = (ds.images.to(torch.int16) + tiled[ds.labels]).clamp(0, 255).to(torch.uint8)
    meta = PoisonMeta(attack="patch", dataset=ds.name, dataset_size=len(ds), norm="linf", budget=strength / 255)
    return Poison(images, ds.labels.clone(), torch.arange(len(ds)), meta)


def test_transplant_moves_the_perturbation_and_clips():
    clean = torch.tensor([[[[10, 250]]]], dtype=torch.uint8)
    poisoned = torch.tensor([[[[14, 255]]]], dtype=torch.uint8)
    onto = torch.tensor([[[[0, 253]]]], dtype=torch.uint8)
    assert transplant(poisoned, clean, onto).flatten().tolist() == [4, 255]
    assert transplant(clean, poisoned, onto).flatten().tolist() == [0, 248]


def test_partners_hold_another_label():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2, 3])
    partner = other_class_partners(labels)
    assert (partner >= 0).all() and (labels[partner] != labels).all()
    assert (other_class_partners(torch.tensor([5, 5, 5])) == -1).all()  # one class: nobody to pair with


def test_probe_picks_only_changed_images_and_is_seeded():
    ds = data.load("scenes", split="train", n_train=64, difficulty="standard")
    images = ds.images.clone()
    images[:10] ^= 1  # change ten images only
    poisoned = ds.with_images(images)
    [probe] = shortcut_probes(poisoned, ds, size=8, seed=3)
    assert 0 < len(probe.originals) <= 8 and set(probe.originals.indices.tolist()) <= set(range(10))
    assert (probe.transplanted.labels == probe.originals.labels).all()  # scored against the perturbation's label
    assert torch.equal(probe.originals.indices, shortcut_probes(poisoned, ds, size=8, seed=3)[0].originals.indices)
    assert shortcut_probes(ds, ds) == []  # nothing changed, nothing to probe


def test_a_learned_shortcut_shows_and_a_clean_run_has_no_probe(tmp_path):
    clean_train = data.load("scenes", split="train", **OPTIONS)
    path = tmp_path / "patch.safetensors"
    patch_poison(clean_train).save(path)
    config = TrainConfig(
        dataset="scenes",
        dataset_options=OPTIONS,
        model="resnet18",
        width=0.125,
        recipe="quick",
        epochs=12,
        batch_size=32,
        poison=str(path),
        precision="fp32",
    )
    train_set, test_set, probes = splits_and_probes(config)  # the trainer adds no probe by itself
    assert [p.name for p in probes] == ["shortcut"]
    result = train(config, train_set=train_set, test_set=test_set, probes=probes, progress=False)
    assert "shortcut_acc" not in train(replace(config, epochs=1), progress=False).history[-1]
    last = result.history[-1]
    # the patches are learned (the perturbation alone is classified) and the shapes are not yet
    # (measured: 74% on the moved patches, 10% on the clean originals, 9% on the test set)
    assert last["shortcut_acc"] >= 50.0, last
    assert last["clean_train_acc"] <= 25.0, last
    assert result.summary["final_shortcut_acc"] == last["shortcut_acc"]
    clean = train(
        TrainConfig(
            dataset="scenes",
            dataset_options=OPTIONS,
            model="resnet18",
            width=0.125,
            recipe="quick",
            epochs=1,
            batch_size=64,
            precision="fp32",
        ),
        progress=False,
    )
    assert "shortcut_acc" not in clean.history[-1]


def test_cli_train_with_a_poison_asks_for_the_shortcut_probe(tmp_path):
    from uebench.cli import main

    base = ["--data-option", "n_train=64", "--data-option", "n_test=32", "--quiet"]
    assert (
        main(["craft", "--attack", "ops", "--attack-preset", "fast", "--out", str(tmp_path / "p.safetensors"), *base])
        == 0
    )
    run = ["train", "--model", "linear", "--recipe", "quick", "--epochs", "1", *base]
    assert main([*run, "--poison", str(tmp_path / "p.safetensors"), "--out", str(tmp_path / "poisoned")]) == 0
    assert main([*run, "--out", str(tmp_path / "clean")]) == 0
    assert "shortcut_acc" in (tmp_path / "poisoned" / "metrics.jsonl").read_text()
    assert "shortcut_acc" not in (tmp_path / "clean" / "metrics.jsonl").read_text()
