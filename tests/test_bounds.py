"""Issue 28, sections 3 and 4: work and memory bounded by what the input really is, and one line for every bad input.

Each class of the issue is one parametrised test over generated cases: sizes a file declares are checked before
anything is allocated (measured with tracemalloc, which sees numpy's allocations), only regular files are opened,
every count has a bound checked before any work starts, hostile tensors, names, JSON and dataset files are one line,
paths in any encoding are taken everywhere, what is written is strict JSON, and two runs never share a label.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import struct
import sys
import threading
import tracemalloc
import types
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import uebench.poisons.exchange  # noqa: F401  (imported before any memory is measured)
from benchkit import SMALL
from uebench.cli import main as cli_main
from uebench.core.errors import UserError
from uebench.data import load
from uebench.experiments.bench.run import make_plan, run_bench

DATA = ["--data-option", "n_train=40", "--data-option", "n_test=10"]  # the dataset every import here is checked on
IMPORT_ON = ["import", "--attack-name", "x", "--norm", "linf", "--budget", "0.0314", "--quiet"]  # add a dataset
IMPORT = [*IMPORT_ON, *DATA]
TRAIN_ON = ["train", "--model", "linear", "--recipe", "quick", "--epochs", "1", "--quiet"]  # add a dataset
TRAIN = [*TRAIN_ON, *DATA]
BIG = 2**27  # bytes a hostile file declares: 128 MiB, against a dataset that takes about 1 MiB


def cli(args) -> int:
    return cli_main([os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args])


def one_line_error(args, capsys) -> str:
    code = cli(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code} for {args}: {err}"
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
    return err


def peak_bytes(fn) -> int:
    """The most memory `fn()` held at once beyond what was held before (numpy's allocations included)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def npy_header(shape, dtype="|u1") -> bytes:
    """The bytes of an .npy header declaring `shape` (version 1.0, padded to 64 bytes as numpy writes it)."""
    text = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode() + b" "
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def reconstruct_pickle(nbytes: int) -> bytes:
    """A pickle of `_reconstruct(ndarray, (nbytes,), b'b')`: 80 bytes that make numpy's unpickler allocate nbytes."""
    return (
        b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
        + b"J"
        + struct.pack("<i", nbytes)
        + b"\x85C\x01b\x87R."
    )


def cifar_folder(root: Path, batch: dict | bytes) -> Path:
    """cifar-10-batches-py/ whose every batch is `batch` (a dict pickled as the official files are, or raw bytes)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    data = batch if isinstance(batch, bytes) else pickle.dumps(batch, protocol=2)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(data)
    return root


# ---------- 3. sizes a file declares are checked before anything is allocated ----------


def _npz_member_declaring_big(d: Path) -> list:
    with zipfile.ZipFile(d / "p.npz", "w") as z:
        z.writestr("images.npy", npy_header((BIG // 3072, 3, 32, 32)) + b"\0" * 64)
    return [*IMPORT, "--from", d / "p.npz", "--out", d / "o.safetensors"]


def _npy_declaring_big(d: Path) -> list:
    (d / "p.npy").write_bytes(npy_header((BIG // 3072, 3, 32, 32)) + b"\0" * 64)
    return [*IMPORT, "--from", d / "p.npy", "--out", d / "o.safetensors"]


def _labels_declaring_big(d: Path) -> list:
    np.save(d / "x.npy", np.zeros((40, 32, 32, 3), np.float32))
    (d / "y.npy").write_bytes(npy_header((BIG // 8,), "<i8") + b"\0" * 64)
    return [*IMPORT, "--from", d / "x.npy", "--format", "ntga", "--labels", d / "y.npy", "--out", d / "o.safetensors"]


def _rem_reconstruct_big(d: Path) -> list:
    (d / "r-def-noise.pkl").write_bytes(reconstruct_pickle(BIG))
    return [*IMPORT, "--from", d / "r-def-noise.pkl", "--allow-pickle", "--out", d / "o.safetensors"]


def _cifar_reconstruct_big(d: Path) -> list:
    cifar_folder(d / "data", reconstruct_pickle(BIG))
    return [*TRAIN_ON, "--dataset", "cifar10", "--data-dir", d / "data", "--out", d / "run"]


def _mnist_gzip_bomb(d: Path) -> list:
    (d / "data").mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):  # 256 MiB of zeros, 256 KiB on disk
        with gzip.open(d / "data" / f"{name}.gz", "wb", compresslevel=1) as f:
            f.write(b"\0\0\x08\x01" + struct.pack(">I", 2 * BIG))
            for _ in range(2 * BIG // 2**24):
                f.write(bytes(2**24))
    return [*TRAIN_ON, "--dataset", "mnist", "--data-dir", d / "data", "--out", d / "run"]


DECLARED_BIG = {  # case: (the files, the most memory the refusal may take, what the line says)
    "npz member": (_npz_member_declaring_big, 2**25, "declares an array of shape"),
    "npy": (_npy_declaring_big, 2**25, "declares an array of shape"),
    "ntga labels": (_labels_declaring_big, 2**25, "declares an array of shape"),
    "rem-pkl": (_rem_reconstruct_big, 2**25, "an unfinished numpy object"),
    "cifar batch": (_cifar_reconstruct_big, 2**25, "an unfinished numpy object"),
    "mnist gzip": (_mnist_gzip_bomb, 3 * 2**26, "bytes an MNIST file holds"),  # MNIST's own size (55 MB), no more
}


@pytest.mark.parametrize("case", DECLARED_BIG, ids=list(DECLARED_BIG))
def test_a_size_a_file_declares_is_checked_before_anything_is_allocated(case, tmp_path, capsys):
    make, limit, says = DECLARED_BIG[case]
    args = make(tmp_path)
    cli(args)  # once unmeasured: the modules it imports on first use are not the file's doing
    capsys.readouterr()
    box = {}
    used = peak_bytes(lambda: box.setdefault("code", cli(args)))
    err = capsys.readouterr().err.strip()
    assert box["code"] == 2 and err.startswith("error:") and len(err.splitlines()) == 1, err
    assert says in err, err
    assert used < limit, f"{case}: {used / 2**20:.0f} MiB held for a file that declares {BIG / 2**20:.0f} MiB"
    assert not (tmp_path / "o.safetensors").exists() and not (tmp_path / "run").exists()


def test_an_npz_member_that_is_not_needed_is_never_inflated(tmp_path, capsys):
    clean = load("scenes", n_train=40, n_test=10)
    images = clean.images.numpy().copy()
    images[:, 0, 0, 0] ^= 1  # one grey level: within the budget
    np.savez_compressed(tmp_path / "p.npz", images=images, notes=np.zeros(BIG, np.uint8))  # 128 MiB of zeros
    box = {}
    args = [*IMPORT, "--from", tmp_path / "p.npz", "--out", tmp_path / "o.safetensors"]
    used = peak_bytes(lambda: box.setdefault("code", cli(args)))
    assert box["code"] == 0, capsys.readouterr().err
    assert used < 2**25, f"{used / 2**20:.0f} MiB held: the unused member was inflated"


# ---------- 3. only regular files are opened ----------


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _ntga_with_fifo_labels(d: Path) -> list:
    np.save(d / "x.npy", np.zeros((40, 32, 32, 3), np.float32))
    return ["--format", "ntga", "--from", d / "x.npy", "--labels", _fifo(d / "y.npy")]


FIFOS = {  # what each case imports (or trains on), with a FIFO where a file is read
    "png folder": lambda d: ["--format", "png", "--from", _fifo(d / "png" / "0.png").parent],
    "npz": lambda d: ["--from", _fifo(d / "p.npz")],
    "npy": lambda d: ["--from", _fifo(d / "p.npy")],
    "em-pt": lambda d: ["--from", _fifo(d / "perturbation.pt")],
    "rem-pkl": lambda d: ["--allow-pickle", "--from", _fifo(d / "x-def-noise.pkl")],
    "ntga labels": _ntga_with_fifo_labels,
    "cifar batch": lambda d: [
        "--dataset",
        "cifar10",
        "--data-dir",
        _fifo(d / "data" / "cifar-10-batches-py" / "data_batch_1").parents[1],
    ],
}


@pytest.mark.parametrize("case", FIFOS, ids=list(FIFOS))
def test_a_fifo_is_refused_not_waited_on(case, tmp_path, capsys):
    command = TRAIN_ON if case.startswith("cifar") else IMPORT
    out = tmp_path / ("out" if command is TRAIN_ON else "out.safetensors")  # import writes a .safetensors file
    args = [*command, *FIFOS[case](tmp_path), "--out", out]
    box = {}
    worker = threading.Thread(target=lambda: box.setdefault("code", cli(args)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    hung = worker.is_alive()
    if hung:  # free the reader blocked in open(): a writer opens the FIFO and closes it
        for fifo in (p for p in tmp_path.rglob("*") if p.is_fifo()):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        worker.join(timeout=20)
    err = capsys.readouterr().err.strip()
    assert not hung, f"{case}: waited on a FIFO"
    assert box.get("code") == 2 and "not a regular file" in err and len(err.splitlines()) == 1, err
    assert not out.exists()


# ---------- 3. every count has a bound, checked before any work starts ----------


class WorkStarted(Exception):
    """Raised by the first step of real work: a count refused in time never gets there."""


def _start_work(*_args, **_kw):
    raise WorkStarted


@pytest.fixture(scope="module")
def kept_bench(tmp_path_factory) -> Path:
    """A finished two-epoch bench (clean and OPS) that kept its weights: what sal-sweep reads."""
    out = tmp_path_factory.mktemp("bounds") / "bench"
    run_bench(replace(SMALL, attacks=("ops",), keep_weights=True), out, progress=False, log=None)
    return out


def fake_ray(cpus: float = 2.0):
    """A connected Ray of one node with `cpus` CPUs and no GPU: what the driver asks before it submits anything."""
    node = {"Alive": True, "Resources": {"CPU": cpus}}
    return types.SimpleNamespace(
        is_initialized=lambda: True, cluster_resources=lambda: dict(node["Resources"]), nodes=lambda: [node]
    )


BENCH = ["bench", "--attacks", "ops", *DATA, "--epochs", "1", "--sal-every", "1", "--quiet"]
RAY = [*BENCH, "--executor", "ray"]
TOO_MANY = "1000000000000"

COUNTS = {  # case: (arguments, where the work would start)
    "n_train": ([*TRAIN_ON, "--data-option", f"n_train={TOO_MANY}"], "uebench.data.scenes.generate"),
    "n_test": ([*TRAIN_ON, "--data-option", f"n_test={TOO_MANY}"], "uebench.data.scenes.generate"),
    "epochs": ([*TRAIN, "--epochs", TOO_MANY], "uebench.training.trainer.train"),
    "sal rounds": ([*TRAIN, "--sal", "--sal-rounds", TOO_MANY], "uebench.training.trainer.train"),
    "sal subset": ([*TRAIN, "--sal", "--sal-mode", "fast", "--sal-subset", TOO_MANY], "uebench.training.trainer.train"),
    "bench seeds": ([*BENCH, "--seeds", "10000000"], "uebench.experiments.bench.run.make_plan"),
    "bench seed list": ([*BENCH, "--seeds", ",".join(map(str, range(200)))], "uebench.experiments.bench.run.make_plan"),
    "bench epochs": ([*BENCH, "--epochs", TOO_MANY], "uebench.experiments.bench.run.make_plan"),
    "width": ([*TRAIN, "--width", "1e6"], "uebench.training.trainer.train"),
    "bench width": ([*BENCH, "--width", "1e6"], "uebench.experiments.bench.run.make_plan"),
    "ud bootstrap": (
        ["ud", "--clean", "c", "--poisoned", "p", "--bootstrap", TOO_MANY],
        "uebench.training.records.load_run_sal",
    ),
    "sweep rounds": (
        ["sal-sweep", "{bench}", "--rounds", TOO_MANY, "--quiet"],
        "uebench.experiments.sweep.measure_run",
    ),
    "sweep repeats": (
        ["sal-sweep", "{bench}", "--repeats", "1000000000", "--quiet"],
        "uebench.experiments.sweep.measure_run",
    ),
    "attack option": (
        ["craft", "--attack", "em", "--attack-option", f"max_rounds={TOO_MANY}", *DATA],
        "uebench.data.load",
    ),
    "attack option in a bench": (
        [*BENCH, "--attack-option", f"ops.pixels={TOO_MANY}"],
        "uebench.experiments.bench.run.make_plan",
    ),
    "defense option": (
        [*TRAIN, "--defense", "ueraser", "--defense-option", f"repeats={TOO_MANY}"],
        "uebench.training.trainer.train",
    ),
    "crafting width": (["craft", "--attack", "tap", "--attack-option", "width=1e6", *DATA], "uebench.data.load"),
    "ray cpus per run": ([*RAY, "--cpus-per-run", "1000"], "uebench.experiments.bench.ray_executor.prepare_bench"),
    "ray gpus per run": ([*RAY, "--gpus-per-run", "1"], "uebench.experiments.bench.ray_executor.prepare_bench"),
}


@pytest.mark.parametrize("case", COUNTS, ids=list(COUNTS))
def test_a_count_past_its_bound_is_one_line_before_any_work(case, tmp_path, capsys, monkeypatch, request):
    args, work = COUNTS[case]
    if "{bench}" in args:
        bench = tmp_path / "bench"
        shutil.copytree(request.getfixturevalue("kept_bench"), bench)
        args = [str(bench) if a == "{bench}" else a for a in args]
    monkeypatch.setattr(work, _start_work)
    monkeypatch.setitem(sys.modules, "ray", fake_ray())
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    out = tmp_path / ("out.safetensors" if args[0] == "craft" else "out")  # craft writes a .safetensors file
    one_line_error([*args, *(() if args[0] in ("ud", "sal-sweep") else ("--out", out))], capsys)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, nothing measured


def _plain_ints(config: type) -> list[str]:
    """The fields of a config dataclass typed a plain int (or optional int) without a Count bound."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(config, include_extras=True)
    ints = (int, int | None, typing.Optional[int])
    return [f.name for f in dataclasses.fields(config) if hints.get(f.name) in ints]


def test_every_count_an_attack_or_a_defense_takes_has_a_bound():
    from uebench.attacks.base import ATTACKS
    from uebench.defenses.base import DEFENSES

    unbounded = {
        f"{kind} {name}": fields
        for kind, registry in (("attack", ATTACKS), ("defense", DEFENSES))
        for name in registry.names()
        if (fields := _plain_ints(registry.get(name).Config))
    }
    assert (
        unbounded == {}
    )  # declare each Annotated[int, Count(...)] (uebench.core.options): a typo is one line, not hours


# ---------- 4. hostile tensors, names, dataset files and numbers: one line, never a traceback ----------

TENSORS = {
    "sparse": lambda: torch.zeros(40, 3, 32, 32).to_sparse(),
    "sparse csr": lambda: torch.zeros(40 * 3 * 32, 32).to_sparse_csr(),
    "meta device": lambda: torch.empty(40, 3, 32, 32, device="meta"),
    "quantized": lambda: torch.quantize_per_tensor(torch.zeros(40, 3, 32, 32), 0.1, 0, torch.qint8),
    "complex": lambda: torch.zeros(40, 3, 32, 32, dtype=torch.complex64),
    "boolean": lambda: torch.zeros(40, 3, 32, 32, dtype=torch.bool),
    "wrapped sparse": lambda: {"perturbation": torch.zeros(40, 3, 32, 32).to_sparse()},
    # TAP's export is read for CIFAR only: a CIFAR-10 folder of 15 images
    "tap-packed sparse": lambda: [torch.zeros(15, 3, 32, 32).to_sparse(), list(range(15))],
    "tap-packed meta ids": lambda: [torch.zeros(15, 3, 32, 32), torch.empty(15, dtype=torch.int64, device="meta")],
}


@pytest.mark.parametrize("case", TENSORS, ids=list(TENSORS))
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_tensor_that_is_not_dense_real_numbers_is_one_line(case, tmp_path, capsys):
    name, data = "perturbation.pt", DATA
    if case.startswith("tap"):
        name, data = (
            "poisons_packed_x.pth",
            ["--dataset", "cifar10", "--data-dir", cifar_folder(tmp_path / "c", _batch())],
        )
    torch.save(TENSORS[case](), tmp_path / name)
    err = one_line_error([*IMPORT_ON, *data, "--from", tmp_path / name, "--out", tmp_path / "o.safetensors"], capsys)
    assert "tensor" in err and not (tmp_path / "o.safetensors").exists()


def _png(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)


NAMES = {  # case: (format, the file that carries the name)
    "superscript class folder": ("apbench-imagenet", "²/0.png"),
    "23-digit class folder": ("apbench-imagenet", "1" * 23 + "/0.png"),
    "23-digit png": ("png", "data/" + "9" * 23 + ".png"),
    "superscript png": ("png", "data/²³.png"),
}


@pytest.mark.parametrize("case", NAMES, ids=list(NAMES))
def test_a_name_of_digits_that_is_no_usable_integer_is_one_line(case, tmp_path, capsys):
    fmt, name = NAMES[case]
    _png(tmp_path / "src" / name)
    one_line_error([*IMPORT, "--format", fmt, "--from", tmp_path / "src", "--out", tmp_path / "o.safetensors"], capsys)
    assert not (tmp_path / "o.safetensors").exists()


def _batch(**change) -> dict:
    batch = {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2], b"batch_label": b"x"}
    return {**batch, **{k.encode(): v for k, v in change.items()}}


CIFAR = {
    "label 10": _batch(labels=[0, 1, 10]),
    "label -1": _batch(labels=[0, -1, 2]),
    "pixel 300": _batch(data=np.full((3, 3072), 300, np.int64)),
    "fewer labels than images": _batch(labels=[0, 1]),
    "float64 batch": _batch(data=np.zeros((3, 3072), np.float64)),
    "data as a list": _batch(data=[[0] * 3072] * 3),
    "labels as text": _batch(labels=b"012"),
    "boolean labels": _batch(labels=[True, False, True]),
}


@pytest.mark.parametrize("case", CIFAR, ids=list(CIFAR))
def test_a_cifar_batch_that_is_not_the_official_layout_is_one_line(case, tmp_path, capsys):
    root = cifar_folder(tmp_path / "data", CIFAR[case])
    names = [n.encode() for n in ("airplane car bird cat deer dog frog horse ship truck".split())]
    (root / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    with pytest.raises(UserError, match="corrupt CIFAR file"):
        load("cifar10", root, "train")
    err = one_line_error([*TRAIN_ON, "--dataset", "cifar10", "--data-dir", root, "--out", tmp_path / "run"], capsys)
    assert "corrupt CIFAR file" in err and not (tmp_path / "run").exists()


def test_official_cifar_batches_read_as_before(shared_data):
    """The pickle parser reads the real files to the same arrays the unpickler gave."""
    path = shared_data / "cifar-10-batches-py-subset" / "data_batch_1"
    expected = pickle.loads(path.read_bytes(), encoding="bytes")
    ds = load("cifar10", shared_data, "train")
    assert ds.images[: len(expected[b"labels"])].reshape(-1, 3072).numpy().tobytes() == expected[b"data"].tobytes()
    assert ds.labels[: len(expected[b"labels"])].tolist() == expected[b"labels"] and ds.num_classes == 10


@pytest.mark.parametrize("label", [300, -1, 11])
def test_an_svhn_label_outside_the_digits_is_one_line(label, tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    y = np.array([[1], [10], [label]])
    scipy_io.savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 3), np.uint8), "y": y})
    with pytest.raises(UserError, match="labels outside 0..10"):
        load("svhn", tmp_path, "train")


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_pickle_parser_reads_what_pickle_writes_at_every_protocol(protocol):
    from uebench.data.files import load_pickle

    value = {
        b"data": np.arange(24, dtype=np.int8).reshape(2, 3, 4),
        "big-endian": np.arange(6, dtype=">i2").reshape(2, 3),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "plain": [1, -2, 3.5, None, True, "text", b"bytes", (1, 2)],
    }
    got = load_pickle(pickle.dumps(value, protocol=protocol), "test", 2**20)
    assert got.keys() == value.keys() and got["plain"] == value["plain"]
    for key in (b"data", "big-endian", "fortran"):
        assert got[key].dtype == value[key].dtype and np.array_equal(got[key], value[key])
    assert load_pickle(b"\x80\x02U\x03abcq\x00.", "py2", 10) == b"abc"  # a Python 2 str reads as bytes


RAY_NUMBERS = {
    "gpus nan": ["--gpus-per-run", "nan"],
    "cpus inf": ["--cpus-per-run", "inf"],
    "cpus nan": ["--cpus-per-run", "nan"],
    "port superscript": ["--address", "localhost:²"],
    "port past 65535": ["--address", "localhost:99999999999"],
}


@pytest.mark.parametrize("case", RAY_NUMBERS, ids=list(RAY_NUMBERS))
def test_ray_numbers_that_are_no_numbers_are_one_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("uebench.experiments.bench.ray_executor.prepare_bench", _start_work)
    monkeypatch.setitem(sys.modules, "ray", fake_ray())
    one_line_error([*RAY, *RAY_NUMBERS[case], "--out", tmp_path / "out"], capsys)
    assert not (tmp_path / "out").exists()


BENCH_EDITS = {  # a hand-edited bench.json given to sal-sweep
    "no sal settings": lambda b: b["config"].pop("sal"),
    "sal settings a string": lambda b: b["config"].__setitem__("sal", "fast"),
    "eps a word": lambda b: b["config"]["sal"].__setitem__("eps", "x"),
    "rounds past the bound": lambda b: b["config"]["sal"].__setitem__("rounds", 10**12),
    "unknown sal setting": lambda b: b["config"]["sal"].__setitem__("nope", 1),
    "config a list": lambda b: b.__setitem__("config", [1]),
    "run folder a number": lambda b: b["plan"]["runs"][0].__setitem__("dir", 5),
    "run model a number": lambda b: b["plan"]["runs"][0]["train"].__setitem__("model", 3),
    "run settings unknown": lambda b: b["plan"]["runs"][0]["train"].__setitem__("nope", 1),
    "data_dir a number": lambda b: b["config"].__setitem__("data_dir", 5),
}


@pytest.mark.parametrize("case", BENCH_EDITS, ids=list(BENCH_EDITS))
def test_a_hand_edited_bench_record_is_one_line_for_sal_sweep(case, kept_bench, tmp_path, capsys, monkeypatch):
    bench = tmp_path / "bench"
    shutil.copytree(kept_bench, bench)
    record = json.loads((bench / "bench.json").read_text())
    BENCH_EDITS[case](record)
    (bench / "bench.json").write_text(json.dumps(record))
    monkeypatch.setattr("uebench.experiments.sweep.measure_run", _start_work)
    one_line_error(["sal-sweep", bench, "--quiet"], capsys)
    assert not (bench / "sweep").exists()


def test_kept_weights_of_another_shape_are_one_line_for_sal_sweep(kept_bench, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    bench = tmp_path / "bench"
    shutil.copytree(kept_bench, bench)
    weights = sorted(bench.glob("runs/*/weights/*.safetensors"))[0]
    state = load_file(str(weights))
    state[next(iter(state))] = torch.zeros(3, 3)
    save_file(state, str(weights))
    err = one_line_error(["sal-sweep", bench, "--quiet"], capsys)
    assert weights.name in err and "does not fit" in err


# ---------- 4. a path in any encoding is taken by every command ----------


def not_utf8(folder: Path, name: str) -> Path:
    """folder/<name> with a byte that is not UTF-8 in its name (as another system's encoding writes it)."""
    return folder / os.fsdecode(b"\xff" + name.encode())


@pytest.fixture(scope="module")
def natural_poison(tmp_path_factory) -> Path:
    """An OPS poison for the bench's data (the quick preset's 'natural' scenes at 40 images)."""
    out = tmp_path_factory.mktemp("bounds") / "ops.safetensors"
    args = ["craft", "--attack", "ops", *DATA, "--data-option", "difficulty=natural", "--out", out, "--quiet"]
    assert cli(args) == 0
    return out


def test_train_takes_a_poison_and_a_tensorboard_folder_whose_names_are_not_utf8(natural_poison, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    poison = not_utf8(tmp_path, "ops.safetensors")
    shutil.copy(natural_poison, poison)
    board = not_utf8(tmp_path, "board")
    args = [*TRAIN, "--data-option", "difficulty=natural", "--poison", poison, "--tensorboard", board]
    assert cli([*args, "--out", not_utf8(tmp_path, "run")]) == 0, capsys.readouterr().err
    assert list(board.glob("events.out.tfevents.*"))


def test_bench_report_and_sweep_take_folders_and_poisons_whose_names_are_not_utf8(natural_poison, tmp_path, capsys):
    poison = not_utf8(tmp_path, "mine.safetensors")
    shutil.copy(natural_poison, poison)
    out = not_utf8(tmp_path, "bench")
    args = [*BENCH, "--sal-subset", "8", "--sal-rounds", "1", "--keep-weights", "--poison", poison, "--out", out]
    assert cli(args) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert len({r["attack"] for r in results["rows"]}) == 3  # clean, ops and the file
    assert not (out / "bench.toml").exists()  # no TOML text holds a Latin-1 path: no replay file, the bench runs
    assert cli(["report", out]) == 0, capsys.readouterr().err
    assert cli(["sal-sweep", out, "--quiet"]) == 0, capsys.readouterr().err


# ---------- 5. what is written is strict JSON; two runs never share a label ----------


def strict(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_every_json_written_is_strict_a_non_finite_number_is_null(tmp_path):
    from uebench.core.io import atomic_write_json

    atomic_write_json(tmp_path / "x.json", {"a": float("nan"), "b": [float("inf"), np.float32("nan"), 1.5], "c": 2})
    assert strict((tmp_path / "x.json").read_text()) == {"a": None, "b": [None, None, 1.5], "c": 2}


def test_a_poison_holding_nan_saves_as_strict_json_and_reads_back(natural_poison, tmp_path):
    from safetensors import safe_open

    from uebench.poisons.poison import Poison

    poison = Poison.load(natural_poison)
    poison.meta.extra["loss"] = float("nan")  # what a diverged crafting loss would record
    poison.save(tmp_path / "p.safetensors")
    with safe_open(str(tmp_path / "p.safetensors"), framework="pt") as f:
        strict(f.metadata()["uebench_poison"])
    assert Poison.load(tmp_path / "p.safetensors").meta.extra["loss"] is None  # and its content hash still holds


SHARES = [(0.3, 0.30000000000000004), (0.1234561, 0.1234562), (0.25, 0.2500001, 0.5)]


@pytest.mark.parametrize("shares", SHARES, ids=lambda s: ",".join(map(repr, s)))
def test_shares_that_label_their_runs_alike_are_refused(shares, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("uebench.experiments.bench.run.make_plan", _start_work)
    err = one_line_error([*BENCH, "--poison-fraction", ",".join(map(repr, shares)), "--out", tmp_path / "b"], capsys)
    assert "label" in err and not (tmp_path / "b").exists()
    monkeypatch.undo()
    with pytest.raises(UserError, match="share the label"):  # the plan refuses it too, wherever it comes from
        make_plan(replace(SMALL, poison_fractions=shares))


def test_sweep_settings_that_share_a_label_are_refused(kept_bench, tmp_path, monkeypatch):
    from uebench.experiments.sweep import run_sweep

    bench = tmp_path / "bench"
    shutil.copytree(kept_bench, bench)
    monkeypatch.setattr("uebench.experiments.sweep.measure_run", _start_work)
    with pytest.raises(UserError, match="share the label fast-eps0.05"):
        run_sweep(bench, eps=[0.0500000001], log=None)  # reads eps0.05, as the bench's own 0.05 does
    assert not (bench / "sweep").exists()


def test_a_crosstask_file_named_like_a_multitask_poison_is_refused(tmp_path):
    from uebench.experiments.crosstask.experiment import CrossTaskConfig, validate

    (tmp_path / "em+mt.safetensors").write_bytes(b"")
    config = CrossTaskConfig(attacks=("em", str(tmp_path / "em+mt.safetensors")), multitask_attacks=True)
    with pytest.raises(UserError, match="share a name"):
        validate(config)


def _svhn_mat(path: Path, n: int, compress: bool) -> None:
    import scipy.io

    x = np.zeros((32, 32, 3, n), np.uint8)
    scipy.io.savemat(path, {"X": x, "y": np.ones((n, 1), np.uint8)}, do_compression=compress)


@pytest.mark.parametrize("compress", [True, False], ids=["compressed", "plain"])
def test_an_svhn_file_inflating_past_its_bound_is_refused_while_it_inflates(compress, tmp_path):
    from uebench.data.svhn import _read_mat

    path = tmp_path / "train_32x32.mat"
    _svhn_mat(path, 1000, compress)  # 3 MB of images: 12 KB compressed
    x, y = _read_mat(path)
    assert x.shape == (32, 32, 3, 1000) and y.shape == (1000,)
    tracemalloc.start()
    with pytest.raises(UserError, match="more than 1,000,000 bytes|more than an SVHN file"):
        _read_mat(path, max_bytes=1_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_500_000  # what the bound and the file are, not what the images would be


def test_an_svhn_file_whose_x_is_no_numeric_array_is_one_line(tmp_path):
    import scipy.io

    (tmp_path / "svhn").mkdir()
    cells = np.empty((3,), dtype=object)
    cells[:] = [1, 2, 3]  # a cell array: scipy would build Python objects for as many cells as it declares
    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": cells, "y": np.ones((3, 1))})
    with pytest.raises(UserError, match="must be numeric arrays"):
        load("svhn", tmp_path, "test")
