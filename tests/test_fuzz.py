"""Bad input across every command: each must exit 2 with one line starting `error:`, no traceback, and leave the
folder it was pointed at exactly as it was (issue 19's fuzz, kept as a regression suite)."""

from __future__ import annotations

import errno
import hashlib
import json
import re
from pathlib import Path

import pytest

from uebench.cli import main as cli_main

SCENES = ["--data-option", "n_train=64", "--data-option", "n_test=32"]
TRAIN = ["train", "--model", "linear", "--recipe", "quick", "--epochs", "1", *SCENES, "--quiet"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root and a hash of its bytes (what 'as it was' means)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def cli(args) -> int:
    return cli_main([str(a) for a in args])


def one_line_error(args, capsys) -> str:
    code = cli(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code} for {args}: {err}"
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    assert (
        cli(
            [
                *TRAIN,
                "--sal",
                "--sal-mode",
                "fast",
                "--sal-subset",
                "8",
                "--sal-rounds",
                "1",
                "--sal-layers",
                "fc",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def poison_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "ops.safetensors"
    assert (
        cli(
            [
                "craft",
                "--attack",
                "ops",
                "--data-option",
                "n_train=64",
                "--data-option",
                "n_test=32",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def sal_runs(tmp_path_factory) -> Path:
    """A clean run folder as `train --sal` writes metrics.jsonl: two layers, one above beta each epoch."""
    out = tmp_path_factory.mktemp("fuzz") / "sal"
    out.mkdir()
    recs = [
        {"epoch": e, "test_acc": 50.0, "sal": {"a": 1.0, "b": 0.0}, "sal_mode": "fast", "sal_origin": "running"}
        for e in (1, 2)
    ]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return out


def with_meta(src: Path, dst: Path, edit) -> Path:
    """A copy of a poison file whose metadata JSON went through edit(text) -> text (the content hash dropped)."""
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()["uebench_poison"]
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    dst.write_bytes(save(tensors, metadata={"uebench_poison": edit(meta)}))
    return dst


# ---------- bad values on the command line ----------

TRAIN_BAD = [
    ["--data-option", "foo=1"],
    ["--data-option", "size=abc"],
    ["--data-option", "n_train=2.5"],
    ["--data-option", "n_train=0"],
    ["--width", "nan"],
    ["--width", "inf"],
    ["--width", "0"],
    ["--seed", str(2**70)],
    ["--seed", "-1"],
    ["--lr", "nan"],
    ["--lr", "-1"],
    ["--epochs", "0"],
    ["--batch-size", "0"],
    ["--subset", "0"],
    ["--subset", "-1"],
    ["--subset", "100000"],
    ["--precision", "fp8"],
    ["--device", "tpu"],
    ["--device", "meta"],
    ["--resume", "--overwrite"],
    ["--sal-eps", "0.1"],
    ["--sal-mode", "fast"],
    ["--model", "nope"],
    ["--recipe", "nope"],
    ["--defense", "nope"],
    ["--defense-option", "q=1"],
    ["--dataset", "nope"],
    ["--poison", "/no/such/file.safetensors"],
    ["--data-option", "n_train=" + "1" * 5000],  # an integer Python's int() refuses to parse
    ["--data-option", "n_train=" + "[" * 5000 + "]" * 5000],
    ["--data-option", "n_train=1e999"],
]


@pytest.mark.parametrize("extra", TRAIN_BAD, ids=lambda a: " ".join(a)[:40])
def test_train_bad_values(extra, tmp_path, capsys):
    before = snapshot(tmp_path)
    one_line_error([*TRAIN, *extra, "--out", tmp_path / "run"], capsys)
    assert snapshot(tmp_path) == before


BENCH_BAD = [
    ["--width", "0"],
    ["--width", "nan"],
    ["--attack-option", "lsp.eps=nan"],
    ["--subset", "100000"],
    ["--precision", "fp8"],
    ["--device", "tpu"],
    ["--seeds", "0"],
    ["--epochs", "0"],
    ["--attacks", "nope"],
    ["--data-option", "nope=1"],
    ["--data-option", "n_train=-3"],
    ["--sal-subset", "0"],
]


@pytest.mark.parametrize("extra", BENCH_BAD, ids=lambda a: " ".join(a)[:40])
def test_bench_bad_values_write_nothing(extra, tmp_path, capsys):
    one_line_error(
        [
            "bench",
            "--attacks",
            "lsp",
            "--data-option",
            "n_train=64",
            "--data-option",
            "n_test=32",
            *extra,
            "--out",
            tmp_path / "b",
            "--quiet",
        ],
        capsys,
    )
    assert not (tmp_path / "b").exists()  # nothing written: the corrected command is not blocked by a bench.json


CRAFT_BAD = [
    ["--attack", "lsp", "--attack-option", "eps=nan"],
    ["--attack", "ops", "--attack-option", "nope=1"],
    ["--attack", "nope"],
    ["--attack", "ops", "--subset", "0"],
    ["--attack", "ops", "--data-option", "size=abc"],
    ["--attack", "ops", "--seed", str(2**70)],
]


@pytest.mark.parametrize("extra", CRAFT_BAD, ids=lambda a: " ".join(a)[:40])
def test_craft_bad_values(extra, tmp_path, capsys):
    one_line_error(
        ["craft", *extra, "--data-option", "n_train=64", "--out", tmp_path / "p.safetensors", "--quiet"], capsys
    )
    assert snapshot(tmp_path) == {}


LANDSCAPE_BAD = [
    ["--momentum", "nan"],
    ["--grid", "100000"],
    ["--lr", "inf"],
    ["--seed", str(2**70)],
    ["--epochs", "0"],
]


@pytest.mark.parametrize("extra", LANDSCAPE_BAD, ids=lambda a: " ".join(a)[:40])
def test_landscape_bad_values(extra, tmp_path, capsys):
    one_line_error(["landscape", "--dataset", "scenes", *extra, "--out", tmp_path / "l", "--quiet"], capsys)
    assert not (tmp_path / "l").exists()


CROSSTASK_BAD = [
    ["--width", "nan"],
    ["--seed", str(2**70)],
    ["--subset", "0"],
    ["--lr", "nan"],
    ["--tasks", "nope"],
]


@pytest.mark.parametrize("extra", CROSSTASK_BAD, ids=lambda a: " ".join(a)[:40])
def test_crosstask_bad_values(extra, tmp_path, capsys):
    one_line_error(["crosstask", *extra, "--out", tmp_path / "c", "--quiet"], capsys)
    assert not (tmp_path / "c").exists()


# ---------- bad places to write ----------


@pytest.mark.parametrize("command", ["train", "craft", "bench", "landscape", "crosstask", "export"])
def test_out_that_is_a_file_or_under_a_file(command, tmp_path, capsys, poison_file):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    args = {
        "train": [*TRAIN],
        "craft": ["craft", "--attack", "ops", "--data-option", "n_train=64", "--quiet"],
        "bench": [
            "bench",
            "--attacks",
            "ops",
            "--data-option",
            "n_train=64",
            "--data-option",
            "n_test=32",
            "--epochs",
            "1",
            "--quiet",
        ],
        "landscape": ["landscape", "--dataset", "scenes", "--quiet"],
        "crosstask": ["crosstask", "--quiet"],
        "export": ["export", "--poison", poison_file],
    }[command]
    under = blocker / ("sub.safetensors" if command == "craft" else "sub")  # craft writes a .safetensors file
    for out in (under, *(() if command == "craft" else (blocker,))):
        one_line_error([*args, "--out", out], capsys)
    assert blocker.read_text() == "mine"


def test_craft_overwrite_onto_a_folder(tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "keep.txt").write_text("mine")
    one_line_error(
        ["craft", "--attack", "ops", "--data-option", "n_train=64", "--out", tmp_path / "dir", "--overwrite"], capsys
    )
    assert (tmp_path / "dir" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("command", ["train", "craft", "export", "ud"])
def test_full_disk_is_one_line_and_leaves_no_temp_file(command, tmp_path, capsys, monkeypatch, sal_runs, poison_file):
    import uebench.core.io

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(uebench.core.io.os, "replace", no_space)
    args = {
        "train": [*TRAIN, "--out", tmp_path / "run"],
        "craft": [
            "craft",
            "--attack",
            "ops",
            "--data-option",
            "n_train=64",
            "--out",
            tmp_path / "p.safetensors",
            "--quiet",
        ],
        "export": ["export", "--poison", poison_file, "--out", tmp_path / "png"],
        "ud": ["ud", "--clean", sal_runs, "--poisoned", sal_runs, "--out", tmp_path / "ud"],
    }[command]
    err = one_line_error(args, capsys)
    assert "No space left" in err
    assert not [p for p in tmp_path.rglob("*.tmp")]


# ---------- damaged or hostile files ----------


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: "{not json",
        lambda m: m.replace('"budget": ', '"budget": "abc", "x": '),
        lambda m: m.replace('"attack": "ops"', '"attack": 3'),
        lambda m: m.replace('"budget": ', '"budget": NaN, "x": '),
        lambda m: "[1, 2]",
        lambda m: m.replace('"extra": {', '"extra": {"deep": ' + "[" * 100_000 + "]" * 100_000 + ", ", 1),
        lambda m: m.replace('"extra": {', '"extra": {"deep": ' + "[" * 200 + "]" * 200 + ", ", 1),  # parses
        lambda m: re.sub(r'"seed": \d+', '"seed": ' + "7" * 5000, m),
        lambda m: re.sub(r'"craft_seconds": [^,}]+', '"craft_seconds": NaN', m),
        lambda m: re.sub(r'"epoch_equivalents": [^,}]+', '"epoch_equivalents": Infinity', m),
        lambda m: re.sub(r'"craft_seconds": [^,}]+', '"craft_seconds": 1e999', m),
    ],
    ids=[
        "invalid-json",
        "string-budget",
        "int-attack",
        "nan-budget",
        "list",
        "nested-100000",
        "nested-200",
        "5000-digit-seed",
        "nan-craft-seconds",
        "infinite-epochs",
        "1e999",
    ],
)
def test_malformed_poison_metadata(edit, tmp_path, capsys, poison_file):
    bad = with_meta(poison_file, tmp_path / "bad.safetensors", edit)
    one_line_error([*TRAIN, "--poison", bad, "--out", tmp_path / "run"], capsys)
    assert not (tmp_path / "run").exists()


def test_altered_poison_file_is_refused(tmp_path, capsys, poison_file):
    data = bytearray(poison_file.read_bytes())
    data[-1] ^= 0x01  # one pixel of the last image, one grey level: inside the budget, but not what was written
    (tmp_path / "p.safetensors").write_bytes(bytes(data))
    err = one_line_error([*TRAIN, "--poison", tmp_path / "p.safetensors", "--out", tmp_path / "run"], capsys)
    assert "content hash" in err


@pytest.mark.parametrize(
    "damage",
    [
        ("metrics.jsonl", '{"epoch": 1}\n{broken'),
        ("summary.json", "{broken"),
        ("checkpoint.pt", "not a checkpoint"),
    ],
)
def test_damaged_run_files_read_by_ud(damage, tmp_path, capsys, finished_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if damage[0] == "metrics.jsonl":
        (run / "checkpoint.pt").unlink()  # else the checkpoint, the commit point, is read instead
    (run / damage[0]).write_text(damage[1])
    one_line_error(["ud", "--clean", run, "--poisoned", run, "--out", tmp_path / "ud"], capsys)
    assert not (tmp_path / "ud.json").exists()


def test_ud_does_not_replace_existing_files(tmp_path, capsys, sal_runs):
    (tmp_path / "ud.json").write_text("mine")
    one_line_error(["ud", "--clean", sal_runs, "--poisoned", sal_runs, "--out", tmp_path / "ud"], capsys)
    assert (tmp_path / "ud.json").read_text() == "mine"
    assert cli(["ud", "--clean", sal_runs, "--poisoned", sal_runs, "--out", tmp_path / "ud", "--overwrite"]) == 0
    assert json.loads((tmp_path / "ud.json").read_text())["rows"]


@pytest.mark.parametrize(
    "side",
    [
        '{"attack": "x", "norm": "linf", "budget": "abc"}',
        "[1, 2]",
        "{broken",
        '{"attack": "x", "norm": "linf", "budget": 0.03, "extra": [1]}',
        '{"attack": "x", "norm": "linf", "budget": 0.03, "extra": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}",
        '{"attack": "x", "norm": "linf", "budget": 0.03, "seed": ' + "9" * 5000 + "}",
        '{"attack": "x", "norm": "linf", "budget": 0.03, "craft_seconds": NaN}',
    ],
)
def test_bad_import_sidecar(side, tmp_path, capsys, poison_file):
    assert cli(["export", "--poison", poison_file, "--out", tmp_path / "png"]) == 0
    capsys.readouterr()
    (tmp_path / "png" / "uebench_poison.json").write_text(side)
    one_line_error(
        [
            "import",
            "--from",
            tmp_path / "png",
            "--data-option",
            "n_train=64",
            "--out",
            tmp_path / "i.safetensors",
            "--quiet",
        ],
        capsys,
    )
    assert not (tmp_path / "i.safetensors").exists()


def test_hostile_cifar_batch_does_not_run_its_payload(tmp_path, capsys):
    import os
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in (
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
        "batches.meta",
    ):
        (folder / name).write_bytes(pickle.dumps({b"data": Payload(), b"labels": [0]}))
    err = one_line_error(
        ["train", "--dataset", "cifar10", "--data-dir", tmp_path / "data", "--out", tmp_path / "run"], capsys
    )
    assert "posix.system" in err or "refused" in err
    assert not marker.exists()
