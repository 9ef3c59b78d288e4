"""Dataset loaders and downloads: real shared data when present, else tiny files in the official formats."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from uebench import data
from uebench.core.errors import UserError
from uebench.data.download import download, md5sum
from uebench.data.registry import DATASETS, DatasetInfo

# ---------- writers of tiny files in the official formats ----------


def write_cifar10(folder: Path, per_batch: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """cifar-10-batches-py/ with five train batches and a test batch of `per_batch` images each."""
    rng = np.random.default_rng(seed)
    out = folder / "cifar-10-batches-py"
    out.mkdir(parents=True)
    made = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        (out / name).write_bytes(pickle.dumps({b"data": x, b"labels": y, b"batch_label": name.encode()}))
        made[name] = x
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (out / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return made


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_mnist(folder: Path, n: int = 5, gz: bool = True, seed: int = 0, splits=("train", "t10k")) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for split in splits:
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            raw = idx_bytes(arr)
            name = f"{split}-{kind}-ubyte"
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        made[split] = (x, y)
    return made


def write_png(path: Path, size: tuple[int, int], value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)


def write_tree(root: Path, split_dirs=("train", "val"), per_class: int = 4) -> None:
    for split in split_dirs:
        for c, cls in enumerate(["cat", "dog"]):
            for i in range(per_class):
                write_png(root / split / cls / f"{i:03d}.png", (40, 30), 10 * c + i)


def tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


# ---------- real data (skipped where ../shared/data is absent) ----------


def test_shared_cifar10_subset(shared_data):
    train = data.load("cifar10", shared_data, "train")
    test = data.load("cifar10", shared_data, "test")
    assert len(train) == 5085 and len(test) == 1017
    assert train.shape == (3, 32, 32) and train.images.dtype == torch.uint8
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert test.classes[0] == "airplane" and test.num_classes == 10


def test_shared_mnist_subset(shared_data):
    test = data.load("mnist", shared_data, "test")
    train = data.load("mnist", shared_data, "train")
    assert len(test) == 10_000 and len(train) == 17_435
    assert test.images.shape == (10_000, 1, 28, 28) and train.shape == (1, 28, 28)
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known start of the official test set
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert set(train.labels.unique().tolist()) == set(range(10))


# ---------- tiny files in the official formats ----------


def test_cifar10_official_layout(tmp_path):
    made = write_cifar10(tmp_path)
    train = data.load("cifar10", tmp_path, "train")
    test = data.load("cifar10", tmp_path, "test")
    assert len(train) == 15 and len(test) == 3
    # channel-planar rows become (C, H, W)
    assert torch.equal(test.images[1], torch.from_numpy(made["test_batch"][1].reshape(3, 32, 32)))
    assert train.classes[-1] == "truck"


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("sub", ["", "mnist", "MNIST/raw"])
def test_mnist_idx(tmp_path, gz, sub):
    made = write_mnist(tmp_path / sub, gz=gz)
    for split, stem in (("train", "train"), ("test", "t10k")):
        ds = data.load("mnist", tmp_path, split)
        x, y = made[stem]
        assert ds.images.shape == (5, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.images[:, 0], torch.from_numpy(x))
        assert ds.labels.tolist() == y.tolist()


def test_mnist_npz_train_fallback(tmp_path):
    folder = tmp_path / "mnist-subset"
    write_mnist(folder, splits=("t10k",))
    x = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    np.savez(folder / "part.npz", x_train=x, y_train=np.array([1, 2, 3], dtype=np.uint8))
    ds = data.load("mnist", tmp_path, "train")
    assert ds.labels.tolist() == [1, 2, 3] and torch.equal(ds.images[:, 0], torch.from_numpy(x))


def test_svhn_mat(tmp_path):
    import scipy.io

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)  # H x W x C x N as in the official files
    y = np.array([[10], [1], [9], [10]], dtype=np.uint8)
    (tmp_path / "svhn").mkdir()
    scipy.io.savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": x, "y": y})
    ds = data.load("svhn", tmp_path, "test")
    assert ds.labels.tolist() == [0, 1, 9, 0]
    assert ds.images.shape == (4, 3, 32, 32)
    assert int(ds.images[2, 1, 5, 7]) == int(x[5, 7, 1, 2])


def test_imagefolder(tmp_path):
    write_tree(tmp_path)
    train = data.load("imagefolder", tmp_path, "train", image_size=16)
    test = data.load("imagefolder", tmp_path, "test")  # falls back to val/
    assert train.images.shape == (8, 3, 16, 16) and test.images.shape == (8, 3, 32, 32)
    assert train.classes == ["cat", "dog"] and train.labels.tolist() == [0] * 4 + [1] * 4
    assert int(train.images[5, 0, 0, 0]) == 11  # dog/001.png is filled with 10 + 1


def test_imagefolder_fraction_is_seeded_per_class(tmp_path):
    write_tree(tmp_path, split_dirs=("train", "test"), per_class=10)
    a = data.load("imagefolder", tmp_path, "train", fraction=0.2, seed=1)
    b = data.load("imagefolder", tmp_path, "train", fraction=0.2, seed=1)
    c = data.load("imagefolder", tmp_path, "train", fraction=0.2, seed=2)
    assert a.labels.tolist() == [0, 0, 1, 1]
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


# ---------- bad input ----------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cifar10", "data_batch_1"),
        ("cifar100", "train"),
        ("mnist", "train-images-idx3-ubyte"),
        ("svhn", "train_32x32.mat"),
        ("imagefolder", "train/<class>"),
    ],
)
def test_missing_files_name_files_and_folder(tmp_path, name, expected):
    with pytest.raises(UserError) as e:
        data.load(name, tmp_path, "train")
    msg = str(e.value)
    assert expected in msg and str(tmp_path) in msg and "\n" not in msg


def test_corrupt_mnist(tmp_path):
    write_mnist(tmp_path)
    good = (tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(good[: len(good) // 2])  # truncated gzip
    with pytest.raises(UserError, match="corrupt MNIST file"):
        data.load("mnist", tmp_path, "test")
    raw = gzip.decompress(good)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))  # short payload
    with pytest.raises(UserError, match="header declares"):
        data.load("mnist", tmp_path, "test")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x12\x34" + raw[2:]))
    with pytest.raises(UserError, match="magic"):
        data.load("mnist", tmp_path, "test")


def test_corrupt_cifar_svhn_image(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="corrupt CIFAR file"):
        data.load("cifar10", tmp_path, "test")
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB garbage")
    with pytest.raises(UserError, match="corrupt SVHN file"):
        data.load("svhn", tmp_path, "test")
    write_tree(tmp_path / "tree")
    (tmp_path / "tree" / "val" / "dog" / "002.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match="corrupt image"):
        data.load("imagefolder", tmp_path / "tree", "test")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UserError) as e:
        data.load("imagenet-9000", "/nowhere")
    assert all(n in str(e.value) for n in ("cifar10", "mnist", "svhn", "imagefolder"))


# ---------- download ----------


@pytest.fixture
def mirror(tmp_path) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    return folder


def fake_dataset(monkeypatch, mirror: Path, files: dict[str, bytes], md5s: dict[str, str] | None = None) -> None:
    """Register 'fakeset' whose downloads are `files`, served from the mirror folder by file:// URLs."""
    downloads = []
    for name, payload in files.items():
        (mirror / name).write_bytes(payload)
        md5 = (md5s or {}).get(name) or md5sum(mirror / name)
        downloads.append(((mirror / name).as_uri(), name, md5))
    info = DatasetInfo("fakeset", lambda root, split: None, "download test only", downloads=tuple(downloads))
    monkeypatch.setitem(DATASETS._items, "fakeset", info)


def _tiny_cifar_files(folder: Path) -> list[Path]:
    write_cifar10(folder)
    return sorted((folder / "cifar-10-batches-py").iterdir())


def test_download_verifies_extracts_and_skips(tmp_path, mirror, monkeypatch):
    archive = tar_gz({"cifar-10-batches-py/" + p.name: p.read_bytes() for p in _tiny_cifar_files(tmp_path / "src")})
    fake_dataset(monkeypatch, mirror, {"cifar-10-python.tar.gz": archive, "notes.txt": b"hello"})
    root = tmp_path / "data"
    assert download("fakeset", root, quiet=True) == root
    assert (root / "notes.txt").read_bytes() == b"hello"
    assert len(data.load("cifar10", root, "test")) == 3  # the unpacked archive is a working CIFAR-10 folder
    for p in mirror.iterdir():  # present files with the right md5 are not fetched again
        p.unlink()
    download("fakeset", root, quiet=True)
    assert not list(root.glob(".*.tmp"))  # no temp file of the download left


def test_download_wrong_md5_leaves_nothing(tmp_path, mirror):
    (mirror / "train-images-idx3-ubyte.gz").write_bytes(b"not the official file")
    root = tmp_path / "data"
    with pytest.raises(UserError, match="md5 mismatch") as e:
        download("mnist", root, quiet=True, base_url=mirror.as_uri())
    assert "\n" not in str(e.value)
    assert list(root.iterdir()) == []


def test_download_failure_and_unsafe_archive(tmp_path, mirror, monkeypatch):
    with pytest.raises(UserError, match="download of .* failed"):
        download("svhn", tmp_path / "data", quiet=True, base_url=mirror.as_uri())  # mirror lacks the file
    fake_dataset(monkeypatch, mirror, {"evil.tar.gz": tar_gz({"../escaped.txt": b"x"})})
    with pytest.raises(UserError, match="unsafe archive"):
        download("fakeset", tmp_path / "data", quiet=True)
    assert not (tmp_path / "escaped.txt").exists()


def test_every_file_dataset_declares_downloads():
    for name in ("cifar10", "cifar100", "mnist", "svhn"):
        for url, filename, md5 in DATASETS.get(name).downloads:
            assert url.endswith(filename) and len(md5) == 32


def test_seeded_subset_is_a_seeded_uniform_draw_of_sorted_indices():
    from uebench.data import seeded_subset

    ds = data.load("scenes", split="train", n_train=200, n_test=20)
    a, b, c = seeded_subset(ds, 50, seed=1), seeded_subset(ds, 50, seed=1), seeded_subset(ds, 50, seed=2)
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices)
    assert len(a) == 50 and torch.equal(a.indices, a.indices.sort().values) and len(set(a.indices.tolist())) == 50
    assert torch.equal(a.images, ds.images[a.indices]) and torch.equal(a.labels, ds.labels[a.indices])
    with pytest.raises(UserError, match="only 200"):
        seeded_subset(ds, 201)
