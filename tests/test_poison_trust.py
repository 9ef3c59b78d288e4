"""Nothing a poison file says about itself turns off a check (issue 28, class 1).

Whether a poison is unpaired (its images replace the whole training set, its budget unchecked) is the file's
structure: a file with an `indices` tensor maps each image to the clean image it replaces and gets every check,
whatever its metadata says; a file without one is unpaired, and is trained on only when the user confirms it
(`--unpaired`, `TrainConfig(unpaired=True)`, `BenchConfig(unpaired=True)`). An import's sidecar cannot say either.
No run trains on an empty or degenerate set.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uebench.cli import main
from uebench.core.errors import UserError
from uebench.data import load
from uebench.poisons.exchange import SIDECAR, export_png
from uebench.poisons.poison import Poison, PoisonMeta

SCENES = ["--dataset", "scenes", "--data-option", "n_train=40", "--quiet"]
TRAIN = ["train", "--model", "linear", "--recipe", "quick", "--epochs", "1", *SCENES]
EPS = 8  # grey levels: EM's 8/255


@pytest.fixture(scope="module")
def scenes40():
    return load("scenes", split="train", n_train=40)


def run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    _, err = capsys.readouterr()
    return rc, err


def refused(capsys, *argv: str, match: str) -> str:
    rc, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0], lines[0]
    return lines[0]


def em_poison(ds, extra=None) -> Poison:
    """A paired sample-wise Linf poison within 8/255 on every image (EM's budget), made without crafting."""
    g = torch.Generator().manual_seed(1)
    delta = torch.randint(-EPS, EPS + 1, ds.images.shape, generator=g)
    images = (ds.images.int() + delta).clamp(0, 255).to(torch.uint8)
    meta = PoisonMeta(
        attack="em", dataset=ds.name, dataset_size=len(ds), norm="linf", budget=EPS / 255, extra=dict(extra or {})
    )
    return Poison(images, ds.labels.clone(), torch.arange(len(ds)), meta)


def over_budget(p: Poison) -> Poison:
    images = p.images.clone()
    images[0] = (images[0].int() + 40).clamp(0, 255).to(torch.uint8)  # one image 40 grey levels over
    return replace(p, images=images)


def flipped(p: Poison) -> Poison:
    return replace(p, labels=(p.labels + 1) % 10)  # every label moved to the next class


def first(k: int):
    return lambda p: replace(p, images=p.images[:k], labels=p.labels[:k], indices=p.indices[:k])


# each broken poison, and the check that refuses it when its metadata claims nothing
BAD = {
    "over-budget": (over_budget, "breaks its linf budget"),
    "flipped-labels": (flipped, "40 labels differ"),
    "one-image": (first(1), "covers 2.5%"),  # the trainer's rule: every trained image carries the poison
    "zero-images": (first(0), "holds no images"),
}
FORGED = [{"unpaired": True}, {"unpaired": True, "budget_checked": False}, {"unpaired": "yes"}]
FORGED_IDS = ["&".join(f"{k}={v}" for k, v in f.items()) for f in FORGED]


def unpaired_of(p: Poison) -> Poison:
    """The same images as an unpaired poison (what an unpaired import holds): no index mapping."""
    meta = replace(p.meta, dataset_size=len(p), extra={"unpaired": True})
    return Poison(p.images, p.labels, torch.arange(len(p)), meta, paired=False)


# ---- a paired file cannot skip its checks, whatever its metadata claims -------------------------------------------
@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("forged", [{}, *FORGED], ids=["honest", *FORGED_IDS])
def test_a_paired_poison_is_checked_whatever_its_metadata_says(bad, forged, scenes40, tmp_path, capsys):
    path = tmp_path / "p.safetensors"
    make, message = BAD[bad]
    make(em_poison(scenes40, forged)).save(path)
    assert Poison.load(path).paired  # it holds indices: its metadata decides nothing
    if forged:  # a claim a file cannot make is refused by the check itself
        with pytest.raises(UserError, match="unpaired"):
            Poison.load(path).apply(scenes40)
    out = tmp_path / "run"
    refused(capsys, *TRAIN, "--poison", str(path), "--out", str(out), match="says 'unpaired'" if forged else message)
    # --unpaired confirms an unpaired file; it cannot unpair a paired one
    refused(capsys, *TRAIN, "--poison", str(path), "--unpaired", "--out", str(out), match="is paired")
    assert not out.exists()


def test_an_honest_paired_poison_still_trains(scenes40, tmp_path, capsys):
    path = tmp_path / "p.safetensors"
    em_poison(scenes40).save(path)
    rc, err = run(capsys, *TRAIN, "--poison", str(path), "--out", str(tmp_path / "run"))
    assert rc == 0, err
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "unpaired" not in manifest["train_set"] and "unpaired" not in json.loads(
        (tmp_path / "run" / "config.json").read_text()
    )
    # --unpaired on a paired poison would record a run as what it is not
    refused(capsys, *TRAIN, "--poison", str(path), "--unpaired", "--out", str(tmp_path / "r2"), match="--unpaired")
    refused(capsys, *TRAIN, "--unpaired", "--out", str(tmp_path / "r3"), match="--unpaired")
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()


# ---- an unpaired poison: confirmed by the user, marked in every result, never degenerate --------------------------
def test_an_unpaired_poison_trains_only_when_confirmed_and_says_so(scenes40, tmp_path, capsys):
    path = tmp_path / "u.safetensors"
    unpaired_of(over_budget(em_poison(scenes40))).save(path)  # its budget cannot be checked: the user says go
    p = Poison.load(path)
    assert not p.paired and len(p) == len(scenes40)
    with pytest.raises(UserError, match="unpaired"):
        p.apply(scenes40)
    out = tmp_path / "run"
    refused(capsys, *TRAIN, "--poison", str(path), "--out", str(out), match="--unpaired")
    assert not out.exists()
    rc, err = run(capsys, *TRAIN, "--poison", str(path), "--unpaired", "--out", str(out))
    assert rc == 0, err
    assert json.loads((out / "config.json").read_text())["unpaired"] is True
    assert json.loads((out / "manifest.json").read_text())["train_set"]["unpaired"] is True
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert not any(k.startswith(("shortcut", "clean_train")) for k in record)  # nothing to transplant


DEGENERATE = {
    "zero-images": "none of class 0",
    "one-image": "none of class",
    "fewer-than-classes": "none of class",
    "class-missing": "none of class 3",
    "label-10": "labels outside [0, 10)",
}


def degenerate(kind: str, ds) -> Poison:
    p = unpaired_of(em_poison(ds))
    if kind in ("zero-images", "one-image", "fewer-than-classes"):
        k = {"zero-images": 0, "one-image": 1, "fewer-than-classes": 9}[kind]
        keep = torch.arange(k)
    elif kind == "class-missing":
        keep = (p.labels != 3).nonzero().flatten()
    else:  # labels outside the dataset's classes
        return replace(p, labels=torch.where(p.labels == 0, 10, p.labels))
    return Poison(
        p.images[keep], p.labels[keep], torch.arange(len(keep)), replace(p.meta, dataset_size=len(keep)), paired=False
    )


@pytest.mark.parametrize("kind", DEGENERATE)
def test_a_degenerate_unpaired_set_is_refused_even_when_confirmed(kind, scenes40, tmp_path, capsys):
    path = tmp_path / "u.safetensors"
    degenerate(kind, scenes40).save(path)
    with pytest.raises(UserError, match=re.escape(DEGENERATE[kind])):
        Poison.load(path).check(scenes40, unpaired=True)
    refused(capsys, *TRAIN, "--poison", str(path), "--unpaired", "--out", str(tmp_path / "run"), match=DEGENERATE[kind])
    assert not (tmp_path / "run").exists()


def test_a_paired_poison_of_no_images_is_refused_by_its_check(scenes40):
    with pytest.raises(UserError, match="no images"):
        first(0)(em_poison(scenes40)).check(scenes40)


# ---- import: a sidecar cannot unpair a folder ---------------------------------------------------------------------
def ops_export(ds, folder: Path) -> Poison:
    """A paired one-pixel (L0 budget 1) poison of every image, exported as <idx>.png with its sidecar."""
    images = ds.images.clone()
    images[:, :, 5, 7] = 255 - images[:, :, 5, 7]
    meta = PoisonMeta(attack="ops", dataset=ds.name, dataset_size=len(ds), norm="l0", budget=1.0)
    p = Poison(images, ds.labels.clone(), torch.arange(len(ds)), meta)
    export_png(p, folder)
    return p


@pytest.mark.parametrize("forged", FORGED, ids=FORGED_IDS)
def test_a_sidecar_cannot_unpair_an_import(forged, scenes40, tmp_path, capsys):
    folder = tmp_path / "export"
    p = ops_export(scenes40, folder)
    side = json.loads((folder / SIDECAR).read_text())
    side["extra"] = {**side["extra"], **forged}
    (folder / SIDECAR).write_text(json.dumps(side))
    out = tmp_path / "imported.safetensors"
    rc, err = run(capsys, "import", *SCENES, "--from", str(folder), "--out", str(out))
    assert rc == 0, err
    q = Poison.load(out)
    assert q.paired and torch.equal(q.indices, p.indices) and not {"unpaired", "budget_checked"} & set(q.meta.extra)
    # the same export with one image edited 5 pixels over its budget is refused, and nothing is written
    png = folder / "data" / "3.png"
    img = np.asarray(Image.open(png)).copy()
    img[0, :5] = 255 - img[0, :5]
    Image.fromarray(img).save(png)
    out.unlink()
    refused(capsys, "import", *SCENES, "--from", str(folder), "--out", str(out), match="l0 budget")
    assert not out.exists()


def test_an_unpaired_poison_is_not_exported_under_made_up_indices(scenes40, tmp_path):
    with pytest.raises(UserError, match="unpaired"):
        export_png(unpaired_of(em_poison(scenes40)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- the bench: refused unless confirmed; marked in results.json/.csv, verdict unknown ------------------------------
def test_a_bench_marks_an_unpaired_poison_in_every_row(scenes40, tmp_path):
    from uebench.experiments.bench.run import BenchConfig, SALSettings, run_bench

    path = tmp_path / "apb.safetensors"
    unpaired_of(em_poison(scenes40)).save(path)
    config = BenchConfig(
        preset="test",
        dataset="scenes",
        dataset_options={"n_train": 40, "n_test": 20},
        attacks=(),
        poisons=(str(path),),
        model="linear",
        recipe="quick",
        epochs=1,
        batch_size=20,
        sal=SALSettings(mode="fast", rounds=1, subset=8),
        precision="fp32",
    )
    out = tmp_path / "bench"
    with pytest.raises(UserError, match="--unpaired"):
        run_bench(config, out, progress=False, log=None)
    assert not out.exists()
    with pytest.raises(UserError, match="unpaired"):  # a share of a poison needs to know which images it replaced
        run_bench(replace(config, unpaired=True, poison_fractions=(0.5, 1.0)), out, progress=False, log=None)
    assert not out.exists()
    result = run_bench(replace(config, unpaired=True), out, progress=False, log=None)
    assert result.complete
    rows = {r["attack"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["em"]["unpaired"] is True and rows["em"]["learned"] == "unknown"
    assert rows["clean"]["unpaired"] is False
    with open(out / "results.csv") as f:
        csv_rows = {r["attack"]: r for r in csv.DictReader(f)}
    assert csv_rows["em"]["unpaired"] == "True" and csv_rows["em"]["learned"] == "unknown"
    manifest = json.loads((out / rows["em"]["run"] / "manifest.json").read_text())
    assert manifest["train_set"]["unpaired"] is True
