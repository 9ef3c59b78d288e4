"""`uebench craft | attacks | import | export` end to end: files written, refusals as one line with exit 2,
bring-your-own-poison round trips."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uebench.attacks import ATTACKS
from uebench.cli import main
from uebench.core.errors import UserError
from uebench.data import load
from uebench.poisons.poison import Poison

SCENES = ["--dataset", "scenes", "--data-option", "n_train=40", "--quiet"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def refused(capsys, *argv: str, match: str) -> str:
    rc, _, err = run(capsys, *argv)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def scenes40():
    return load("scenes", split="train", n_train=40)


@pytest.fixture
def ops_poison(tmp_path, capsys) -> Path:
    out = tmp_path / "ops.safetensors"
    rc, stdout, err = run(capsys, "craft", "--attack", "ops", *SCENES, "--out", str(out))
    assert rc == 0, err
    return out


def image_tree(root: Path, size: int, classes: int = 10) -> Path:
    """An imagefolder dataset (root/{train,test}/<class>/<k>.png) of tiny random images."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(classes):
            d = root / split / f"c{c}"
            d.mkdir(parents=True)
            for k in range(2):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{k}.png")
    return root


# ---- attacks / craft --------------------------------------------------------------------------------------
def test_attacks_lists_every_registered_attack(capsys):
    rc, out, _ = run(capsys, "attacks")
    assert rc == 0
    for name in ATTACKS.names():
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert "1.304" in out  # LSP's budget at 3x32x32
    rc, out, _ = run(capsys, "attacks", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["ar"]["norm"] == "l2" and rows["ar"]["budget"] == 1.0
    assert rows["ops"]["norm"] == "l0" and rows["ops"]["budget"] == 1.0
    assert set(rows) == set(ATTACKS.names())


def test_craft_writes_a_checked_poison_and_refuses_to_overwrite(ops_poison, capsys, scenes40):
    p = Poison.load(ops_poison)
    p.check(scenes40)
    assert p.meta.attack == "ops" and p.meta.params["preset"] == "paper" and len(p) == 40
    refused(capsys, "craft", "--attack", "ops", *SCENES, "--out", str(ops_poison), match="--overwrite")
    rc, _, err = run(
        capsys, "craft", "--attack", "ops", *SCENES, "--out", str(ops_poison), "--overwrite", "--attack-preset", "fast"
    )
    assert rc == 0, err
    assert Poison.load(ops_poison).meta.params["preset"] == "fast"


def test_craft_subset(tmp_path, capsys, scenes40):
    out = tmp_path / "lsp.safetensors"
    rc, stdout, err = run(
        capsys, "craft", "--attack", "lsp", *SCENES, "--subset", "12", "--seed", "2", "--out", str(out)
    )
    assert rc == 0, err
    p = Poison.load(out)
    assert len(p) == 12 and p.meta.seed == 2 and p.meta.dataset_size == 40
    summary = json.loads(stdout.splitlines()[0])
    assert summary["measured"] <= summary["budget"] + 1e-5


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--attack", "nope"], "unknown attack 'nope'; valid: "),
        (["--attack", "ops", "--attack-option", "bogus=1"], "no parameter bogus; valid: pixels"),
        (["--attack", "ops", "--attack-preset", "slow"], "no preset 'slow'; valid: paper, fast"),
        (["--attack", "ar", "--attack-option", "eps=-1"], "must be positive"),
        (["--attack", "ar", "--attack-option", "eps=1000"], "larger than the whole image range"),
        (["--attack", "lsp", "--attack-option", "eps=2"], "outside (0, 1]"),
        (["--attack", "ops", "--attack-option", "pixels=0"], "pixels must be a whole number"),
        (["--attack", "ops", "--attack-option", "pixels=2000"], "offer only"),
        (["--attack", "ops", "--subset", "41"], "only 40 images"),
        (["--attack", "ops", "--attack-option", "pixels"], "--attack-option expects key=value"),
    ],
)
def test_craft_refusals(argv, match, tmp_path, capsys):
    out = tmp_path / "p.safetensors"
    refused(capsys, "craft", *argv, *SCENES, "--out", str(out), match=match)
    assert not out.exists()


def test_craft_refuses_linf_budget_outside_sense(tmp_path, capsys, scenes40):
    """Every Linf attack (most are written elsewhere) refuses a budget above 64/255 (no longer imperceptible), NaN
    or below 0 before any work; 64/255 itself is accepted."""
    import dataclasses

    from uebench.attacks import make_config
    from uebench.core.errors import UserError

    checked = []
    for name in ATTACKS.names():
        cls = ATTACKS.get(name)
        if cls.norm != "linf" or "eps" not in {f.name for f in dataclasses.fields(cls.Config)}:
            continue
        for eps in (2.0, 0.9, 65 / 255, float("nan"), -0.1):
            with pytest.raises(UserError):
                cls(make_config(cls, "paper", eps=eps)).validate(scenes40)
        cls(make_config(cls, "paper", eps=64 / 255)).validate(scenes40)
        checked.append(name)
    if not checked:
        pytest.skip("no Linf attack with an `eps` parameter registered")
    refused(
        capsys,
        "craft",
        "--attack",
        checked[0],
        "--attack-option",
        "eps=0.9",
        *SCENES,
        "--out",
        str(tmp_path / "x.safetensors"),
        match="outside (0, 64/255]",
    )


@pytest.mark.parametrize("attack, size, match", [("ops", 1, "offer only 8"), ("ar", 2, "smaller than its 3x3 process")])
def test_craft_refuses_datasets_the_method_cannot_handle(attack, size, match, tmp_path, capsys):
    root = image_tree(tmp_path / "tiny", size)
    refused(
        capsys,
        "craft",
        "--attack",
        attack,
        "--dataset",
        "imagefolder",
        "--data-dir",
        str(root),
        "--data-option",
        f"image_size={size}",
        "--out",
        str(tmp_path / "p.safetensors"),
        "--quiet",
        match=match,
    )


def test_refusal_through_the_real_entry_point(tmp_path):
    """A real process: exit status 2 and exactly one line on stderr, no traceback."""
    r = subprocess.run(
        [sys.executable, "-m", "uebench.cli", "craft", "--attack", "nope", "--out", str(tmp_path / "x.safetensors")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown attack 'nope'" in r.stderr
    assert "Traceback" not in r.stderr


# ---- export / import --------------------------------------------------------------------------------------
def test_export_import_round_trip_is_exact(ops_poison, tmp_path, capsys, scenes40):
    folder = tmp_path / "exported"
    rc, _, err = run(capsys, "export", "--poison", str(ops_poison), "--out", str(folder))
    assert rc == 0, err
    p = Poison.load(ops_poison)
    names = sorted(f.name for f in (folder / "data").iterdir())
    assert names == sorted(f"{i}.png" for i in p.indices.tolist())
    # the PNGs hold exactly the poisoned bytes
    k = 5
    png = np.asarray(Image.open(folder / "data" / f"{int(p.indices[k])}.png"))
    assert np.array_equal(png, p.images[k].permute(1, 2, 0).numpy())
    back = tmp_path / "back.safetensors"
    rc, _, err = run(capsys, "import", *SCENES, "--from", str(folder), "--out", str(back))  # metadata from the sidecar
    assert rc == 0, err
    q = Poison.load(back)
    assert torch.equal(q.images, p.images) and torch.equal(q.indices, p.indices) and torch.equal(q.labels, p.labels)
    assert (q.meta.attack, q.meta.norm, q.meta.budget, q.meta.params) == (
        p.meta.attack,
        p.meta.norm,
        p.meta.budget,
        p.meta.params,
    )
    q.check(scenes40)
    # export refuses a non-empty folder unless told, and then replaces the earlier export
    refused(capsys, "export", "--poison", str(ops_poison), "--out", str(folder), match="--overwrite")
    (folder / "data" / "9999.png").write_bytes(b"stale")
    rc, _, err = run(capsys, "export", "--poison", str(ops_poison), "--out", str(folder), "--overwrite")
    assert rc == 0, err
    assert not (folder / "data" / "9999.png").exists()


def test_import_apbench_imagenet_layout_is_unpaired(ops_poison, tmp_path, capsys, scenes40):
    """APBench's ImageNet export writes <label>/<j>.png with j a position in an unseeded random subset, not the clean
    index: the import takes the labels from the folder names, pairs nothing, and says the budget is unchecked."""
    p = Poison.load(ops_poison)
    order = torch.randperm(len(p), generator=torch.Generator().manual_seed(5))  # APBench's unseeded subset order
    root = tmp_path / "apbench"
    for j, k in enumerate(order.tolist()):
        (root / str(int(p.labels[k]))).mkdir(parents=True, exist_ok=True)
        Image.fromarray(p.images[k].permute(1, 2, 0).numpy()).save(root / str(int(p.labels[k])) / f"{j}.png")
    out = tmp_path / "imported.safetensors"
    flags = ["--attack-name", "ops-apbench", "--norm", "l0", "--budget", "1", "--out", str(out)]
    # read as <index>.png, j would be taken for the clean index: refused, with the format that reads it
    refused(capsys, "import", *SCENES, "--from", str(root), "--format", "png", *flags, match="apbench-imagenet")
    assert not out.exists()
    rc, _, err = run(capsys, "import", *SCENES, "--from", str(root), *flags)  # auto: integer class folders
    assert rc == 0, err
    assert "budget 1 is recorded unchecked" in err and "probes are off" in err
    q = Poison.load(out)
    assert not q.paired and q.meta.extra["format"] == "apbench-imagenet" and q.meta.extra["budget_checked"] is False
    assert len(q) == len(p) and q.meta.dataset_size == len(p)
    # every image comes back under its folder's label (the same multiset of (label, image) pairs)
    key = lambda x: sorted((int(y), img.numpy().tobytes()) for y, img in zip(x.labels, x.images))  # noqa: E731
    assert key(q) == key(p)
    # the poison is the whole training set, only where the user confirms it; what needs the clean originals says so
    with pytest.raises(UserError, match="--unpaired"):
        q.apply(scenes40)
    train = q.apply(scenes40, unpaired=True)
    assert len(train) == len(p) and train.meta["unpaired"] and torch.equal(train.labels, q.labels)
    from uebench.training.shortcut import shortcut_probes

    assert shortcut_probes(train, scenes40) == []
    with pytest.raises(UserError, match="unpaired"):
        q.fraction(0.5, seed=0)
    with pytest.raises(UserError, match="unpaired"):
        q.measure(scenes40)
    # a victim trains on it once told it is unpaired; the run records no probe it could not compute, and says so
    run_dir = tmp_path / "run"
    train = ["train", "--model", "linear", "--recipe", "quick", "--epochs", "1", "--poison", str(out)]
    refused(capsys, *train, *SCENES, "--out", str(run_dir), match="pass --unpaired")
    assert not run_dir.exists()
    rc, _, err = run(capsys, *train, "--unpaired", *SCENES, "--out", str(run_dir))
    assert rc == 0, err
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert "test_acc" in record and not any(k.startswith(("shortcut", "clean_train")) for k in record)
    assert json.loads((run_dir / "manifest.json").read_text())["train_set"]["unpaired"] is True
    refused(
        capsys,
        "train",
        "--model",
        "linear",
        "--poison",
        str(out),
        "--unpaired",
        "--poison-fraction",
        "0.5",
        *SCENES,
        "--out",
        str(tmp_path / "run2"),
        match="unpaired",
    )
    # a class folder that is not an integer label
    (root / "cat").mkdir()
    out.unlink()
    refused(capsys, "import", *SCENES, "--from", str(root), "--format", "apbench-imagenet", *flags, match="'cat'")


def test_import_npz_layouts(ops_poison, tmp_path, capsys, scenes40):
    p = Poison.load(ops_poison)
    nhwc = p.images.permute(0, 2, 3, 1).numpy()
    flags = ["--attack-name", "ops", "--norm", "l0", "--budget", "1"]
    # NHWC, whole split, no indices: image i replaces clean image i
    np.savez(tmp_path / "full.npz", images=nhwc)
    rc, _, err = run(
        capsys,
        "import",
        *SCENES,
        "--from",
        str(tmp_path / "full.npz"),
        *flags,
        "--out",
        str(tmp_path / "a.safetensors"),
    )
    assert rc == 0, err
    assert torch.equal(Poison.load(tmp_path / "a.safetensors").images, p.images)
    # NCHW, a part of the split, with indices
    np.savez(tmp_path / "part.npz", images=p.images.numpy()[10:20], indices=p.indices.numpy()[10:20])
    rc, _, err = run(
        capsys,
        "import",
        *SCENES,
        "--from",
        str(tmp_path / "part.npz"),
        *flags,
        "--out",
        str(tmp_path / "b.safetensors"),
    )
    assert rc == 0, err
    q = Poison.load(tmp_path / "b.safetensors")
    assert torch.equal(q.indices, p.indices[10:20]) and torch.equal(q.images, p.images[10:20])


@pytest.mark.parametrize(
    "make, flags, match",
    [
        (lambda p: {"images": p.images.numpy()[:10]}, ["--norm", "l0", "--budget", "1"], "no 'indices'"),
        (
            lambda p: {"images": p.images.numpy().astype(np.float32) / 255},
            ["--norm", "l0", "--budget", "1"],
            "must be uint8",
        ),
        (lambda p: {"images": p.images.numpy()[:, :, :8]}, ["--norm", "l0", "--budget", "1"], "fit neither"),
        (lambda p: {"images": p.images.numpy()}, ["--norm", "linf", "--budget", "0.003"], "exceed the linf budget"),
        (lambda p: {"images": p.images.numpy()}, ["--norm", "linf", "--budget", "2"], "above 1"),
        (lambda p: {"images": p.images.numpy()}, ["--norm", "l2", "--budget", "-1"], "must be positive"),
        (lambda p: {"images": p.images.numpy()}, ["--norm", "l0", "--budget", "1.5"], "whole number"),
        (lambda p: {"images": p.images.numpy()}, ["--norm", "l3", "--budget", "1"], "unknown norm 'l3'"),
        (
            lambda p: {"images": p.images.numpy()[::-1].copy()},
            ["--norm", "l0", "--budget", "1"],
            "breaks its l0 budget",
        ),
        (
            lambda p: {
                "images": p.images.numpy(),
                "indices": np.roll(p.indices.numpy(), 1),
                "labels": p.labels.numpy(),
            },
            ["--norm", "l0", "--budget", "1"],
            "labels differ",
        ),
    ],
)
def test_import_refusals(make, flags, match, ops_poison, tmp_path, capsys):
    p = Poison.load(ops_poison)
    np.savez(tmp_path / "bad.npz", **make(p))
    out = tmp_path / "out.safetensors"
    refused(
        capsys,
        "import",
        *SCENES,
        "--from",
        str(tmp_path / "bad.npz"),
        "--attack-name",
        "x",
        *flags,
        "--out",
        str(out),
        match=match,
    )
    assert not out.exists()  # a poison that fails a check is never written


def test_import_refuses_unreadable_png_folders(ops_poison, tmp_path, capsys):
    flags = ["--attack-name", "x", "--norm", "l0", "--budget", "1", "--out", str(tmp_path / "o.safetensors")]
    p = Poison.load(ops_poison)
    a = tmp_path / "named"
    (a / "data").mkdir(parents=True)
    Image.fromarray(p.images[0].permute(1, 2, 0).numpy()).save(a / "data" / "cat.png")
    refused(capsys, "import", *SCENES, "--from", str(a), *flags, match="named by its index")
    b = tmp_path / "twice"
    for sub in ("x", "y"):
        (b / sub).mkdir(parents=True)
        Image.fromarray(p.images[0].permute(1, 2, 0).numpy()).save(b / sub / f"{int(p.indices[0])}.png")
    refused(capsys, "import", *SCENES, "--from", str(b), *flags, match="appears twice")
    c = tmp_path / "size"
    c.mkdir()
    Image.fromarray(np.zeros((5, 5, 3), dtype=np.uint8)).save(c / "0.png")
    refused(capsys, "import", *SCENES, "--from", str(c), *flags, match="5x5")
    refused(capsys, "import", *SCENES, "--from", str(tmp_path / "missing"), *flags, match="not found")
    refused(
        capsys,
        "import",
        *SCENES,
        "--from",
        str(tmp_path / "missing"),
        *flags[:-2],
        "--out",
        str(ops_poison),
        match="--overwrite",
    )
