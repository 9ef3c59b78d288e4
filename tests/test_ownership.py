"""uebench deletes only what it can prove it wrote (issue 28, section 2 and section 5's leftovers).

A file or folder is uebench's when its name carries uebench's tag (a temp file or folder: `.<name>.~<pid>@<host>~...
.tmp`, a lock: `.uebench.lock`, `.<name>.lock`) or when a record uebench wrote says so (a run's manifest, an
experiment's record of the experiment's shape, an export's sidecar). Nothing else is ever deleted, with or without
--overwrite, and nothing another live uebench process holds (a lock under the folder). A refusal is one line, exit 2,
nothing written or deleted; a late refusal leaves the folder as it was. A killed process's tagged temps and locks are
cleared by the next run that works in the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from uebench.cli import main
from uebench.core.errors import UserError
from uebench.core.lock import LOCK_NAME
from uebench.experiments.bench.run import BenchConfig, SALSettings, run_bench
from uebench.experiments.workspace import Workspace

HOST = socket.gethostname()

TINY_BENCH = BenchConfig(
    preset="test",
    dataset="scenes",
    dataset_options={"n_train": 64, "n_test": 32},
    attacks=("ops",),
    model="linear",
    epochs=1,
    defenses=("none",),
    sal=SALSettings(mode="fast", rounds=1, subset=8),
    precision="fp32",
    keep_weights=True,
)
TRAIN = [
    "train",
    "--model",
    "linear",
    "--recipe",
    "quick",
    "--epochs",
    "1",
    "--data-option",
    "n_train=64",
    "--data-option",
    "n_test=32",
]
SCENES = ["--dataset", "scenes", "--data-option", "n_train=40", "--quiet"]


def cli(args, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def refused(args, capsys, match: str = "") -> str:
    code, err = cli(args, capsys)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0], lines[0]
    return lines[0]


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root (folders as None, files as their bytes), to compare a folder before and after."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))} | {
        ".": None
    }


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def tagged(folder: Path, name: str, pid: int, host: str = HOST) -> Path:
    """The name uebench gives a temp file or folder for `name` written by process `pid`."""
    return folder / f".{name}.~{pid}@{host}~abc123.tmp"


def lock_file(path: Path, pid: int, host: str = HOST) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "started": "then"}))
    return path


@pytest.fixture(scope="module")
def live_pid():
    """A live process of this host that is not this one: what a shard training in the folder looks like."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield p.pid
    p.kill()
    p.wait()


@pytest.fixture(scope="module")
def bench_made(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("own") / "bench"
    run_bench(TINY_BENCH, out, progress=False, log=None)
    return out


@pytest.fixture
def bench_dir(bench_made, tmp_path) -> Path:
    out = tmp_path / "bench"
    shutil.copytree(bench_made, out)
    return out


@pytest.fixture(scope="module")
def run_made(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("own") / "run"
    assert main([*TRAIN, "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture
def run_dir(run_made, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run_made, out)
    return out


@pytest.fixture(scope="module")
def poison_made(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("own") / "ops.safetensors"
    assert main(["craft", "--attack", "ops", *SCENES, "--out", str(out)]) == 0
    return out


# ---- 1. the stale-temp sweep takes only uebench's tagged temps ---------------------------------------------------
USER_TEMPS = {
    "hidden .tmp file": lambda d: (d / ".notes.tmp").write_text("the user's"),
    "old-style temp name": lambda d: (d / ".checkpoint.pt.abc123.tmp").write_text("the user's"),
    "hidden .tmp folder": lambda d: ((d / ".draft.tmp").mkdir(), (d / ".draft.tmp" / "a.txt").write_text("mine")),
    "tag of another host": lambda d: tagged(d, "x", 4242, "elsewhere").write_text("another host's"),
}


def _rerun(command: str, out: Path, capsys) -> None:
    if command == "train":
        code, err = cli([*TRAIN, "--out", out, "--resume", "--quiet"], capsys)
    elif command == "report":
        code, err = cli(["report", out], capsys)
    elif command == "sal-sweep":
        code, err = cli(["sal-sweep", out, "--eps", "0.01", "--quiet"], capsys)
    else:
        run_bench(TINY_BENCH, out, progress=False, log=None)
        code, err = 0, ""
    assert code == 0, err


@pytest.mark.parametrize("kind", USER_TEMPS)
@pytest.mark.parametrize("command", ["train", "report", "sal-sweep", "bench"])
def test_the_stale_temp_sweep_leaves_users_hidden_tmp_files(command, kind, request, tmp_path, capsys):
    out = request.getfixturevalue("run_dir" if command == "train" else "bench_dir")
    USER_TEMPS[kind](out)
    before = {k: v for k, v in tree(out).items() if k.startswith(".")}
    _rerun(command, out, capsys)
    after = {k: v for k, v in tree(out).items() if k.startswith(".")}
    assert after == before


# ---- 2. --overwrite replaces only what uebench provably wrote -----------------------------------------------------
def _png(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(path)


USER_EXPORT_FOLDERS = {
    "only data/": lambda d: (d / "data").mkdir(parents=True),
    "data/ with a photo": lambda d: _png(d / "data" / "holiday.png"),
    "data/ of numbered pngs": lambda d: (_png(d / "data" / "0.png"), _png(d / "data" / "1.png")),
    "a sidecar that is not JSON": lambda d: (_png(d / "data" / "0.png"), (d / "uebench_poison.json").write_text("x")),
    "a sidecar of another shape": lambda d: (
        _png(d / "data" / "0.png"),
        (d / "uebench_poison.json").write_text('{"attack": "mine"}'),
    ),
}


@pytest.mark.parametrize("kind", USER_EXPORT_FOLDERS)
def test_export_overwrite_never_replaces_a_users_folder(kind, poison_made, tmp_path, capsys):
    out = tmp_path / "exported"
    USER_EXPORT_FOLDERS[kind](out)
    before = tree(out)
    refused(["export", "--poison", poison_made, "--out", out, "--overwrite"], capsys, "not provably")
    assert tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def test_export_overwrite_replaces_an_earlier_export_and_nothing_beside_it(poison_made, tmp_path, capsys):
    out = tmp_path / "exported"
    assert cli(["export", "--poison", poison_made, "--out", out], capsys)[0] == 0
    (out / "data" / "0.png").unlink()  # an earlier, different export
    assert cli(["export", "--poison", poison_made, "--out", out, "--overwrite"], capsys)[0] == 0
    assert (out / "data" / "0.png").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["exported"]
    (out / "data" / "notes.txt").write_text("the user's")  # a user's file inside: not an export any more
    refused(["export", "--poison", poison_made, "--out", out, "--overwrite"], capsys, "not provably")
    assert (out / "data" / "notes.txt").read_text() == "the user's"


USER_RUN_FOLDERS = {
    "weights/ and config.json": lambda d: (
        (d / "weights").mkdir(parents=True),
        (d / "weights" / "model.pt").write_bytes(b"my model"),
        (d / "config.json").write_text('{"lr": 0.1, "epochs": 3}'),
    ),
    "config.json": lambda d: (d.mkdir(parents=True), (d / "config.json").write_text('{"model": "mine"}')),
    "weights/": lambda d: (
        (d / "weights").mkdir(parents=True),
        (d / "weights" / "epoch-0001.safetensors").write_text("x"),
    ),
    "a manifest of its own": lambda d: (d.mkdir(parents=True), (d / "manifest.json").write_text('{"name": "x"}')),
    "metrics.jsonl": lambda d: (d.mkdir(parents=True), (d / "metrics.jsonl").write_text('{"epoch": 1}\n')),
    "checkpoint.pt": lambda d: (d.mkdir(parents=True), (d / "checkpoint.pt").write_bytes(b"my checkpoint")),
}


@pytest.mark.parametrize("kind", USER_RUN_FOLDERS)
def test_train_overwrite_never_deletes_a_folder_that_holds_no_run(kind, tmp_path, capsys):
    out = tmp_path / "mine"
    USER_RUN_FOLDERS[kind](out)
    before = tree(out)
    refused([*TRAIN, "--out", out, "--overwrite", "--quiet"], capsys, "not provably")
    assert tree(out) == before


def test_train_overwrite_replaces_a_run_but_keeps_the_users_files_in_it(run_dir, capsys):
    (run_dir / "weights").mkdir()
    (run_dir / "weights" / "mine.bin").write_bytes(b"the user's")
    (run_dir / "notes.txt").write_text("the user's")
    assert cli([*TRAIN, "--epochs", "2", "--out", run_dir, "--overwrite", "--quiet"], capsys)[0] == 0
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 2
    assert (run_dir / "weights" / "mine.bin").read_bytes() == b"the user's"
    assert (run_dir / "notes.txt").read_text() == "the user's"


# the three experiments, their record file, and a command that reaches the folder cheaply
EXPERIMENTS = {
    "bench": (
        "bench.json",
        ["bench", "--attacks", "ops", "--model", "linear", "--data-option", "n_train=64", "--quiet"],
    ),
    "crosstask": ("experiment.json", ["crosstask", "--attacks", "ops", "--quiet"]),
    "landscape": ("config.json", ["landscape", "--dataset", "scenes", "--subset", "64", "--quiet"]),
}
BAD_RECORDS = {
    "not JSON": "{damaged",
    "a list": "[1, 2]",
    "JSON of another shape": '{"identity": {"mine": 1}, "training": {"mine": 1}, "plan": 1}',
}


@pytest.mark.parametrize("record", BAD_RECORDS)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_overwrite_refuses_a_folder_that_is_not_provably_the_experiments(experiment, record, tmp_path, capsys):
    name, args = EXPERIMENTS[experiment]
    out = tmp_path / "mine"
    for sub in ("runs", "poisons", "traj", "figures"):
        (out / sub).mkdir(parents=True)
        (out / sub / "keep.txt").write_text("the user's")
    (out / "poison.safetensors").write_bytes(b"the user's")
    (out / name).write_text(BAD_RECORDS[record])
    before = tree(out)
    refused([*args, "--out", out, "--overwrite"], capsys, "not provably")
    assert tree(out) == before


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_overwrite_refuses_a_folder_without_record_whose_names_it_would_replace(experiment, tmp_path, capsys):
    _, args = EXPERIMENTS[experiment]
    out = tmp_path / "mine"
    for sub in ("runs", "poisons", "traj"):
        (out / sub).mkdir(parents=True)
        (out / sub / "keep.txt").write_text("the user's")
    before = tree(out)
    refused([*args, "--out", out, "--overwrite"], capsys, "not provably")
    assert tree(out) == before


OUTPUTS = {  # a file of the user's under a name each experiment writes beside its folders
    "bench": "results.json",
    "crosstask": "results.json",
    "landscape": "landscape.json",
}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_overwrite_refuses_a_folder_without_record_holding_a_file_it_would_write(experiment, tmp_path, capsys):
    _, args = EXPERIMENTS[experiment]
    out = tmp_path / "mine"
    out.mkdir()
    (out / OUTPUTS[experiment]).write_text('{"the user\'s": 1}')
    (out / "report.html").write_text("the user's")
    before = tree(out)
    refused([*args, "--out", out, "--overwrite"], capsys, "not provably")
    assert tree(out) == before


LIVE_LOCKS = {
    "a shard training a run": lambda out, pid: lock_file(next((out / "runs").iterdir()) / LOCK_NAME, pid),
    "a poison being crafted": lambda out, pid: lock_file(out / "poisons" / ".em-s0-0000000000.safetensors.lock", pid),
    "a run held from another host": lambda out, pid: lock_file(
        next((out / "runs").iterdir()) / LOCK_NAME, 4242, "elsewhere"
    ),
}


@pytest.mark.parametrize("where", LIVE_LOCKS)
def test_bench_overwrite_respects_every_live_lock_in_the_folder(where, bench_dir, live_pid, capsys):
    LIVE_LOCKS[where](bench_dir, live_pid)
    before = tree(bench_dir)
    args = ["bench", "--attacks", "ops", "--defenses", "none", "--model", "linear", "--epochs", "2"]
    args += ["--data-option", "n_train=64", "--data-option", "n_test=32", "--precision", "fp32", "--sal-every", "1"]
    refused([*args, "--out", bench_dir, "--overwrite", "--quiet"], capsys, "in use by another uebench process")
    assert tree(bench_dir) == before


@pytest.mark.parametrize("where", ["runs/r1/.uebench.lock", "runs/.r2.lock", "runs/r1/weights/.uebench.lock"])
def test_workspace_overwrite_takes_every_lock_under_what_it_deletes(where, tmp_path, live_pid):
    ws = Workspace(tmp_path / "x", "exp.json", "toy experiment")
    _open(ws, {"a": 1})
    (ws.root / "runs" / "r1").mkdir(parents=True)
    (ws.root / "runs" / "r1" / "summary.json").write_text("{}")
    lock_file(ws.root / where, live_pid)
    before = tree(ws.root)
    with pytest.raises(UserError, match="in use by another uebench process"):
        _open(ws, {"a": 2}, overwrite=True)
    assert tree(ws.root) == before
    lock_file(ws.root / where, dead_pid())  # its holder gone: the lock is stale, taken over and deleted with the rest
    _open(ws, {"a": 2}, overwrite=True)
    assert not (ws.root / "runs").exists()


# ---- 3. a refusal after the folder was taken leaves it as it was --------------------------------------------------
def _open(ws: Workspace, identity, overwrite=False):
    ws.open(
        identity,
        {"identity": identity},
        overwrite=overwrite,
        owned=lambda: ["runs", "p.bin"],
        identity_of=lambda r: r["identity"],
    )


STARTS = {
    "a new folder": (lambda ws: None, False),
    "a folder of the user's": (lambda ws: (ws.root.mkdir(), (ws.root / "notes.txt").write_text("mine")), True),
    "another experiment, replaced": (
        lambda ws: (_open(ws, {"a": 0}), (ws.root / "runs").mkdir(), (ws.root / "runs" / "r").write_text("old")),
        True,
    ),
    "the same experiment, continued": (
        lambda ws: (_open(ws, {"a": 1}), (ws.root / "runs").mkdir(), (ws.root / "runs" / "r").write_text("old")),
        False,
    ),
}


@pytest.mark.parametrize("start", STARTS)
def test_a_late_refusal_leaves_the_folder_as_it_was(start, tmp_path):
    ws = Workspace(tmp_path / "x", "exp.json", "toy experiment")
    make, overwrite = STARTS[start]
    make(ws)
    before = tree(ws.root)
    with pytest.raises(UserError, match="late"):
        with ws.locked():
            ws.open(
                {"a": 1},
                {"identity": {"a": 1}, "note": "new"},
                overwrite=overwrite,
                owned=lambda: ["runs", "p.bin"],
                identity_of=lambda r: r["identity"],
            )
            (ws.root / "runs" / "r2").parent.mkdir(exist_ok=True)
            (ws.root / "runs" / "r2").write_text("new")
            ws.copy_in("p.bin", ws.record_path)
            raise UserError("refused late")
    after = tree(ws.root)
    if start == "the same experiment, continued":  # its record as it was; what it made for itself may stay (a cache)
        assert {k: after.get(k) for k in before} == before
    else:
        assert after == before
    corrected = {"a": 1} if start == "the same experiment, continued" else {"a": 2}
    with ws.locked():  # the corrected command is not refused as "another configuration" (nor as a foreign folder)
        ws.open(
            corrected,
            {"identity": corrected},
            overwrite=overwrite,
            owned=lambda: ["runs", "p.bin"],
            identity_of=lambda r: r["identity"],
        )
    assert json.loads(ws.record_path.read_text()) == {"identity": corrected}


def _foreign_poison(tmp_path: Path) -> Path:
    """A poison of another dataset (scenes of 40 images): refused only once the experiment has its data."""
    import torch

    from uebench.data import load
    from uebench.poisons.poison import Poison, PoisonMeta

    ds = load("scenes", split="train", n_train=40, size=32)
    meta = PoisonMeta(attack="mine", dataset="scenes", dataset_size=40, norm="linf", budget=8 / 255)
    path = tmp_path / "mine.safetensors"
    Poison(ds.images[:8].clone(), ds.labels[:8].clone(), torch.arange(8), meta).save(path)
    return path


@pytest.mark.parametrize("experiment", ["crosstask", "landscape"])
def test_crosstask_and_landscape_refused_late_leave_no_record(experiment, tmp_path, capsys):
    poison = _foreign_poison(tmp_path)
    out = tmp_path / "out"
    if experiment == "crosstask":
        args = ["crosstask", "--attacks", poison, "--data-option", "n_train=64", "--out", out, "--quiet"]
    else:
        args = ["landscape", "--dataset", "scenes", "--subset", "64", "--poison", poison, "--out", out, "--quiet"]
    refused(args, capsys)
    assert not out.exists()  # the corrected command in the same folder starts afresh, not "another configuration"


# ---- 4. one writer per poison file ---------------------------------------------------------------------------
def _hold(lock_path: Path):
    """A second process holding the lock at lock_path until killed."""
    code = (
        "import sys, time; from uebench.core.lock import Lock; Lock(sys.argv[1]).acquire(); print('held', flush=True); "
        "time.sleep(120)"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(lock_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.fixture(scope="module")
def exported(poison_made, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("own") / "png"
    assert main(["export", "--poison", str(poison_made), "--out", str(out)]) == 0
    return out


def _write_poison(command: str, out: Path, poison: Path, exported: Path, extra=()) -> list:
    if command == "import":
        return ["import", "--from", exported, *SCENES, "--out", out, *extra]
    if command == "craft":
        return ["craft", "--attack", "ops", *SCENES, "--out", out, *extra]
    return ["export", "--poison", poison, "--out", out, *extra]


@pytest.mark.parametrize("command", ["import", "craft", "export"])
def test_a_second_writer_of_one_out_is_refused_in_one_line(command, poison_made, exported, tmp_path, capsys):
    out = tmp_path / ("p.safetensors" if command != "export" else "png")
    holder = _hold(tmp_path / f".{out.name}.lock")
    try:
        refused(_write_poison(command, out, poison_made, exported, ["--overwrite"]), capsys, "in use by another")
    finally:
        holder.kill()
        holder.wait()
    assert not out.exists()


@pytest.mark.parametrize("command", ["import", "craft"])
def test_a_poison_file_that_appears_meanwhile_is_not_replaced(
    command, poison_made, exported, tmp_path, monkeypatch, capsys
):
    import uebench.attacks
    import uebench.poisons.exchange

    out = tmp_path / "p.safetensors"
    module, name = (uebench.poisons.exchange, "import_poison") if command == "import" else (uebench.attacks, "craft")
    real = getattr(module, name)

    def slow(*a, **kw):  # another process writes --out while this one works
        out.write_bytes(b"another poison")
        return real(*a, **kw)

    monkeypatch.setattr(module, name, slow)
    refused(_write_poison(command, out, poison_made, exported), capsys, "exists")
    assert out.read_bytes() == b"another poison"


# ---- 5. a killed process's temps and locks are cleared by the next run in the folder ------------------------------
def test_the_next_bench_clears_a_killed_processes_temps_and_locks(bench_dir):
    gone = dead_pid()
    run = next((bench_dir / "runs").iterdir())
    leftovers = [
        tagged(run / "weights", "epoch-0001.safetensors", gone),  # a full-size weights file, killed before its rename
        tagged(run, "checkpoint.pt", gone),
        tagged(bench_dir / "poisons", "ops-s0-0000000000.safetensors", gone),
        tagged(bench_dir, "results.json", gone),
        lock_file(run / LOCK_NAME, gone),  # killed after the run finished, before it let go
        lock_file(bench_dir / "poisons" / ".ops-s0-0000000000.safetensors.lock", gone),
    ]
    for f in leftovers[:4]:
        f.write_bytes(b"x" * 1000)
    run_bench(TINY_BENCH, bench_dir, progress=False, log=None)  # everything finished: a rerun that only reads
    assert [f for f in leftovers if f.exists()] == []


@pytest.mark.parametrize("command", ["import", "craft", "export"])
def test_the_next_write_of_an_out_clears_a_killed_writers_temp(command, poison_made, exported, tmp_path, capsys):
    out = tmp_path / ("p.safetensors" if command != "export" else "png")
    gone = dead_pid()
    left = tagged(tmp_path, out.name, gone)
    if command == "export":
        (left / "data").mkdir(parents=True)
        (left / "data" / "0.png").write_bytes(b"half")
    else:
        left.write_bytes(b"half a poison")
    live = tagged(tmp_path, out.name, os.getpid())  # a live writer's file in progress stays
    live.write_bytes(b"in progress")
    stale = lock_file(tmp_path / ".other.safetensors.lock", gone)  # an import of another file, killed
    held = lock_file(tmp_path / ".third.safetensors.lock", os.getpid())  # one a live process holds stays
    code, err = cli(_write_poison(command, out, poison_made, exported), capsys)
    assert code == 0, err
    assert not left.exists() and not stale.exists() and live.exists() and held.exists() and out.exists()


def test_a_shard_whose_bench_was_replaced_stops_before_it_writes_a_run(tmp_path):
    """A shard opened its bench; another configuration replaced it with --overwrite; the shard's next run must not
    create a folder (or train) in the other bench's tree."""
    from dataclasses import replace

    from benchkit import SMALL
    from uebench.experiments.bench.run import prepare_bench, train_run

    out = tmp_path / "b"
    ws, plan, data = prepare_bench(replace(SMALL, attacks=("ops",)), out, overwrite=False)
    prepare_bench(replace(SMALL, attacks=("ops",), width=0.25), out, overwrite=True)  # another configuration
    before = tree(out)
    run = plan.runs[0]
    with pytest.raises(UserError, match="no longer holds this bench"):
        train_run(ws, run, data, replace(SMALL, attacks=("ops",)), False, lambda _m: None, "here")
    assert tree(out) == before and not (out / run.dir).exists()


def test_a_run_lock_is_not_taken_while_the_folder_is_held_by_an_overwrite(tmp_path):
    """The folder's own lock orders taking a run's lock against an overwrite moving the runs: while another process
    holds it, no run folder appears; once that process has put another experiment there, the taker stops."""
    import subprocess
    import sys
    import threading

    from uebench.core.lock import FolderLock
    from uebench.experiments.workspace import Workspace

    out = tmp_path / "b"
    ws = Workspace(out, "bench.json", "bench")
    out.mkdir()
    (out / "bench.json").write_text(json.dumps({"identity": {"seed": 0}}))
    code = (
        "import json, sys; from uebench.core.lock import FolderLock\n"
        f"with FolderLock({str(out)!r}):\n"
        "    print('held', flush=True); sys.stdin.readline()\n"
        f"    open({str(out / 'bench.json')!r}, 'w').write(json.dumps({{'identity': {{'seed': 7}}}}))\n"
    )
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    outcome: list = []

    def take():
        try:
            with ws.holding(FolderLock(out / "runs" / "r1"), {"seed": 0}, lambda r: r["identity"], poll=0.05):
                outcome.append("held")
        except UserError as e:
            outcome.append(str(e))

    try:
        assert other.stdout.readline().strip() == "held"
        taker = threading.Thread(target=take)
        taker.start()
        taker.join(1.0)
        assert taker.is_alive() and not (out / "runs").exists()  # waits for the folder's lock, creates nothing
        other.stdin.write("go\n")
        other.stdin.flush()
        taker.join(30)
        assert outcome and "no longer holds this bench" in outcome[0]
        assert not (out / "runs").exists()
    finally:
        other.kill()
        other.wait()
