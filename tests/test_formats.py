"""The released poison formats (uebench.poisons.formats), each written here in its own layout and imported back."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest
import torch

from uebench.cli import main
from uebench.core.errors import UserError
from uebench.data import load
from uebench.poisons.exchange import import_poison
from uebench.poisons.poison import bake

EPS = 8 / 255


@pytest.fixture(scope="module")
def clean():
    return load("scenes", n_train=40, n_test=10)


def _noise(shape, seed=0, eps=EPS):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) * 2 - 1) * eps


def _imported(clean, path, **kw):
    return import_poison(clean, path, attack="x", norm=kw.pop("norm", "linf"), budget=kw.pop("budget", EPS), **kw)


def test_em_perturbation_pt_sample_wise_and_class_wise(clean, tmp_path):
    delta = _noise(tuple(clean.images.shape))
    torch.save(delta, tmp_path / "perturbation.pt")
    p = _imported(clean, tmp_path / "perturbation.pt")  # auto: the file name says em-pt
    assert p.meta.extra["format"] == "em-pt" and p.meta.extra["layout"] == "sample-wise"
    assert torch.equal(p.images, bake(clean.images, delta, norm="linf", budget=EPS))
    per_class = _noise((clean.num_classes, *clean.shape), seed=1)
    torch.save(per_class, tmp_path / "cw.pt")
    q = _imported(clean, tmp_path / "cw.pt", format="em-pt")
    assert q.meta.extra["layout"] == "class-wise"
    assert torch.equal(q.images, bake(clean.images, per_class[clean.labels], norm="linf", budget=EPS))
    torch.save(_noise((7, *clean.shape)), tmp_path / "bad.pt")
    with pytest.raises(UserError, match="fit neither the 40 images .* nor the"):
        _imported(clean, tmp_path / "bad.pt", format="em-pt")


def test_unsupervised_perturbations_pt(clean, tmp_path):
    delta = _noise(tuple(clean.images.shape), seed=2)
    torch.save({"perturbation": delta}, tmp_path / "perturbations.pt")  # a wrapped tensor is read too
    p = _imported(clean, tmp_path / "perturbations.pt")
    assert p.meta.extra["format"] == "ucl-pt" and p.measure(clean)["linf"] <= EPS + 1e-6


def test_rem_pickle_needs_allow_pickle_and_reads_numpy_only(clean, tmp_path):
    noise = np.round(_noise(tuple(clean.images.shape), seed=3).numpy() * 255).astype(np.int8)
    path = tmp_path / "rem-fin-def-noise.pkl"
    path.write_bytes(pickle.dumps(noise))
    with pytest.raises(UserError, match="pass --allow-pickle"):
        _imported(clean, path)
    p = _imported(clean, path, allow_pickle=True)
    assert p.meta.extra["format"] == "rem-pkl"
    expect = (clean.images.float() + torch.from_numpy(noise).float()).clamp(0, 255).to(torch.uint8)
    assert torch.equal(p.images, expect)  # int8 grey levels land exactly

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil-def-noise.pkl"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UserError, match="only numpy arrays are read from a pickle"):
        _imported(clean, evil, allow_pickle=True)


def test_npy_images_or_delta(clean, tmp_path):
    delta = _noise(tuple(clean.images.shape), seed=4)
    images = bake(clean.images, delta, norm="linf", budget=EPS)
    np.save(tmp_path / "u8.npy", images.permute(0, 2, 3, 1).numpy())  # (N, H, W, C) as numpy users keep them
    assert torch.equal(_imported(clean, tmp_path / "u8.npy").images, images)
    np.save(tmp_path / "delta.npy", delta.numpy())
    assert torch.equal(_imported(clean, tmp_path / "delta.npy").images, images)


def test_ntga_and_tap_numpy_exports_with_their_labels(clean, tmp_path):
    delta = _noise(tuple(clean.images.shape), seed=5)
    images = bake(clean.images, delta, norm="linf", budget=EPS)
    floats = images.permute(0, 2, 3, 1).numpy().astype(np.float32) / 255.0
    np.save(tmp_path / "x_train.npy", floats)
    np.save(tmp_path / "y_onehot.npy", np.eye(clean.num_classes)[clean.labels.numpy()])
    p = _imported(clean, tmp_path / "x_train.npy", format="ntga", labels=tmp_path / "y_onehot.npy")
    assert torch.equal(p.images, images) and torch.equal(p.labels, clean.labels)
    np.save(tmp_path / "y.npy", clean.labels.numpy())
    q = _imported(clean, tmp_path / "x_train.npy", format="tap-npy", labels=tmp_path / "y.npy")
    assert torch.equal(q.images, images) and q.meta.extra["release"].startswith("TAP")
    wrong = clean.labels.numpy().copy()
    wrong[0] = (wrong[0] + 1) % clean.num_classes
    np.save(tmp_path / "y_wrong.npy", wrong)
    with pytest.raises(UserError, match="labels differ"):
        _imported(clean, tmp_path / "x_train.npy", format="tap-npy", labels=tmp_path / "y_wrong.npy")


def test_tap_png_release_root_reads_its_train_half(clean, tmp_path):
    from PIL import Image

    images = bake(clean.images, _noise(tuple(clean.images.shape), seed=6), norm="linf", budget=EPS)
    for split, n in (("train", len(clean)), ("test", 5)):  # test indices repeat train's: the root must not mix them
        for i in range(n):
            folder = tmp_path / "release" / split / str(int(clean.labels[i]))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    p = _imported(clean, tmp_path / "release")
    assert torch.equal(p.images, images) and p.meta.extra["format"] == "png"


def test_an_honest_export_over_its_l2_budget_is_explained_and_reprojected(clean, tmp_path):
    budget = 0.5
    d = torch.randn(tuple(clean.images.shape), generator=torch.Generator().manual_seed(7))
    d = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * budget * 1.02  # 2% over, as rounding after clipping does
    np.save(tmp_path / "over.npy", d.numpy())
    with pytest.raises(UserError, match=r"40 of 40 images exceed the l2 budget 0\.5 .*\+2\.\d\d%.*--reproject"):
        _imported(clean, tmp_path / "over.npy", norm="l2", budget=budget, format="npy")
    # the same as uint8 images (bake keeps a float delta's budget; an export's bytes are what they are)
    over = (clean.images.float() + torch.round(d * 255)).clamp(0, 255).to(torch.uint8)
    np.save(tmp_path / "over_u8.npy", over.numpy())
    with pytest.raises(UserError, match="exceed the l2 budget"):
        _imported(clean, tmp_path / "over_u8.npy", norm="l2", budget=budget)
    p = _imported(clean, tmp_path / "over_u8.npy", norm="l2", budget=budget, reproject=True)
    assert p.meta.extra["reprojected_images"] > 0 and p.measure(clean)["l2"] <= budget + 1e-5


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "nope"], "unknown poison format 'nope'"),
        (["--labels", "y.npy"], "--labels is read by the formats"),
        (["--allow-pickle"], "--allow-pickle only applies"),
    ],
)
def test_import_bad_input_is_one_line_exit_2(extra, message, clean, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "y.npy", np.zeros(40, dtype=np.int64))
    np.save(tmp_path / "u8.npy", clean.images.numpy())
    args = ["import", "--from", "u8.npy", "--attack-name", "x", "--norm", "linf", "--budget", "0.0314"]
    code = main([*args, "--data-option", "n_train=40", "--out", "p.safetensors", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "p.safetensors").exists()


def test_tap_packed_export_is_denormalised_and_placed_by_its_ids(tmp_path):
    from PIL import Image

    from uebench.poisons.formats import TAP_STD

    g = torch.Generator().manual_seed(8)
    for split in ("train", "test"):
        for c in range(3):
            (tmp_path / "tree" / split / f"class{c}").mkdir(parents=True)
            for i in range(4):
                img = torch.randint(0, 256, (16, 16, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(img).save(tmp_path / "tree" / split / f"class{c}" / f"{i}.png")
    ds = load("imagefolder", tmp_path / "tree", image_size=16)
    std = torch.tensor(TAP_STD["imagefolder"]).view(1, 3, 1, 1)
    ids = [1, 4, 5, 11]  # TAP's sorted random sample of training positions
    pixel = _noise((len(ids), *ds.shape), seed=9)
    path = tmp_path / "poisons_packed_2021-06-01.pth"
    torch.save([pixel / std, ids], path)  # TAP keeps the perturbation in normalised units
    p = _imported(ds, path)  # auto: the file name says tap-packed
    assert p.meta.extra["format"] == "tap-packed" and p.indices.tolist() == ids
    # TAP's own png export: round(255 * clamp(x + delta * std, 0, 1))
    x = ds.images[ids].double() / 255 + (pixel / std).double() * std.double()
    assert torch.equal(p.images, (x.clamp(0, 1) * 255).round().to(torch.uint8))
    torch.save([pixel / std, ids[:3]], path)
    with pytest.raises(UserError, match="4 perturbations need as many integer ids"):
        _imported(ds, path)
    with pytest.raises(UserError, match="normalisation is known for"):
        _imported(load("scenes", n_train=40, n_test=10), path, format="tap-packed")


# ---- DUNE's (image, label) pickle ---------------------------------------------------------------------------------
def _dune_pairs(clean, delta, order="dune", as_bytes=False):
    """The list DUNE's generate_unlearnable.py pickles: (image, label) pairs, class by class (each class's images in
    training order), images float32 CHW in [0,1] (`unl_samples.cpu().numpy()[k]`); or the lineage's raw RGB bytes."""
    x = (clean.images.double() / 255 + delta.double()).clamp(0, 1).float().numpy()
    y = clean.labels.numpy()
    rows = np.argsort(y, kind="stable") if order == "dune" else np.arange(len(y))
    if as_bytes:  # PIL's tobytes(): pixel-interleaved (H, W, C)
        u8 = (x * np.float32(255)).astype(np.uint8)
        return [(u8[i].transpose(1, 2, 0).tobytes(), int(y[i])) for i in rows], rows
    return [(x[i], int(y[i])) for i in rows], rows


def _dune_loader(image):
    """DUNE's utils_train.py cifar10_training_data.__getitem__, up to the PIL image, as an (H, W, C) uint8 array."""
    from PIL import Image

    if isinstance(image, bytes):
        return np.asarray(Image.frombytes("RGB", (32, 32), image).convert("RGB"))
    return np.asarray(Image.fromarray((np.array(image).transpose(1, 2, 0) * 255).astype(np.uint8)))


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("order", ["dune", "training"])
def test_dune_pickle_of_pairs_is_read_as_dunes_own_loader_reads_it(clean, tmp_path, order, protocol):
    delta = _noise(tuple(clean.images.shape), seed=11)
    pairs, rows = _dune_pairs(clean, delta, order)
    path = tmp_path / "DUNE.pkl"
    path.write_bytes(pickle.dumps(pairs, protocol=protocol))
    with pytest.raises(UserError, match="pass --allow-pickle"):
        _imported(clean, path)
    p = _imported(clean, path, allow_pickle=True)  # auto: the file name says dune-pkl
    assert p.meta.extra["format"] == "dune-pkl" and p.paired
    assert p.meta.extra["order"].startswith("class by class" if order == "dune" else "training order")
    # pair k replaces clean image rows[k], with the bytes DUNE's own loader would train on (x * 255, truncated)
    assert p.indices.tolist() == rows.tolist() and torch.equal(p.labels, clean.labels[rows])
    expect = np.stack([_dune_loader(img).transpose(2, 0, 1) for img, _ in pairs])
    assert np.array_equal(p.images.numpy(), expect)
    assert p.measure(clean)["linf"] <= EPS + 1e-6  # paired with the right clean images: within the budget
    assert p.meta.imperceptibility["psnr_mean"] > 30  # measured on import


def test_dune_pickle_of_raw_rgb_bytes(clean, tmp_path):
    delta = _noise(tuple(clean.images.shape), seed=12)
    pairs, rows = _dune_pairs(clean, delta, "dune", as_bytes=True)
    path = tmp_path / "ue.pkl"
    path.write_bytes(pickle.dumps(pairs))
    p = _imported(clean, path, allow_pickle=True, format="dune-pkl")
    expect = np.stack([_dune_loader(img).transpose(2, 0, 1) for img, _ in pairs])
    assert np.array_equal(p.images.numpy(), expect) and p.indices.tolist() == rows.tolist()
    assert p.meta.extra["images"] == "RGB bytes (H, W, C)"


def _bad_dune(clean, tmp_path, mutate):
    pairs, _ = _dune_pairs(clean, _noise(tuple(clean.images.shape), seed=13))
    path = tmp_path / "DUNE.pkl"
    path.write_bytes(pickle.dumps(mutate(pairs)))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p: {"data": p}, "expected DUNE's list of (image, label) pairs, got a dict"),
        (lambda p: [img for img, _ in p], "item 0 is a ndarray, not an (image, label) pair"),
        (lambda p: [(img, y, 0) for img, y in p], "item 0 is a tuple, not an (image, label) pair"),
        (lambda p: [(img[:, :16], y) for img, y in p], "an image of shape (3, 16, 32); the dataset's images are"),
        (lambda p: [(bytes(100), y) for _, y in p], "100 bytes of image; 32x32x3 images take 3,072"),
        (lambda p: [(img.astype(np.uint8), y) for img, y in p], "a uint8 image; DUNE's images are floats"),
        (lambda p: [(img * 2 - 0.5, y) for img, y in p], "image values outside [0, 1]"),
        (lambda p: [(img, 10) for img, _ in p], "has the label 10, not a class in [0, 10)"),
        (lambda p: [(img, -1) for img, _ in p], "has the label -1, not a class in [0, 10)"),
        (lambda p: [(img, "cat") for img, _ in p], "has the label 'cat', not a class"),
        (lambda p: p + p[:1], "holds 41 (image, label) pairs; scenes/train has 40 training images"),
        (lambda p: p[:39], "holds 39 (image, label) pairs"),
        (lambda p: p[1:] + p[:1], "labels follow neither the training order"),
    ],
)
def test_dune_pickle_bad_input_is_refused_in_one_line(clean, tmp_path, mutate, message):
    path = _bad_dune(clean, tmp_path, mutate)
    with pytest.raises(UserError, match=re.escape(message)):
        _imported(clean, path, allow_pickle=True)


def test_dune_pickle_refuses_torch_tensors_and_code(clean, tmp_path):
    pairs, _ = _dune_pairs(clean, _noise(tuple(clean.images.shape), seed=14))
    path = tmp_path / "DUNE.pkl"
    path.write_bytes(pickle.dumps([(torch.from_numpy(img), y) for img, y in pairs]))
    with pytest.raises(UserError, match="the pickle asks for torch"):
        _imported(clean, path, allow_pickle=True)
    huge = np.zeros((3, 64, 64), dtype=np.float64)  # one array larger than an image: refused before it is built
    path.write_bytes(pickle.dumps([(huge, 0)] * 40))
    with pytest.raises(UserError, match="more than the dataset can take"):
        _imported(clean, path, allow_pickle=True)


@pytest.mark.parametrize(
    "name, extra, message",
    [
        ("DUNE.pkl", [], "is a pickle: reading one can run code; pass --allow-pickle"),
        ("DUNE.pkl", ["--allow-pickle"], "holds 41 (image, label) pairs"),
        ("other.pkl", ["--allow-pickle"], "cannot tell the format of other.pkl"),
    ],
)
def test_dune_import_bad_input_is_one_line_exit_2(name, extra, message, clean, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _bad_dune(clean, tmp_path, lambda p: p + p[:1])
    path.rename(tmp_path / name)
    args = ["import", "--from", name, "--attack-name", "dune", "--norm", "linf", "--budget", "0.0314"]
    code = main([*args, "--data-option", "n_train=40", "--out", "p.safetensors", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "p.safetensors").exists()


def test_dune_import_through_the_cli_prints_its_psnr_and_ssim(clean, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pairs, _ = _dune_pairs(clean, _noise(tuple(clean.images.shape), seed=15))
    (tmp_path / "DUNE.pkl").write_bytes(pickle.dumps(pairs))
    args = ["import", "--from", "DUNE.pkl", "--allow-pickle", "--attack-name", "dune", "--norm", "linf"]
    code = main([*args, "--budget", "0.0314", "--data-option", "n_train=40", "--out", "p.safetensors", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    shown = json.loads(out.splitlines()[0])["imperceptibility"]
    assert shown["images"] == 40 and 30 < shown["psnr_mean"] < 60 and 0.5 < shown["ssim_mean"] < 1
