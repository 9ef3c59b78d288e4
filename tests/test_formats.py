"""The released poison formats (uebench.poisons.formats), each written here in its own layout and imported back."""

from __future__ import annotations

import pickle

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
