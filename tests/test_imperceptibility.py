"""PSNR and SSIM of a poison against its clean images (uebench.poisons.imperceptibility): worked by hand, checked
against scikit-image, recorded in a poison's metadata outside its content hash, shown by craft, bench and report."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import pytest
import torch

from uebench.attacks import craft
from uebench.cli import main
from uebench.core.errors import UserError
from uebench.data import load
from uebench.poisons.imperceptibility import imperceptibility, psnr, ssim, ssim_window
from uebench.poisons.poison import Poison

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


@pytest.fixture(scope="module")
def scenes():
    return load("scenes", n_train=40, n_test=10)


@pytest.fixture(scope="module")
def ops(scenes):
    return craft("ops", scenes, seed=0, progress=False)


# ---- the numbers, by hand ---------------------------------------------------------------------------------------
def test_psnr_by_hand():
    clean = torch.full((2, 3, 8, 8), 100, dtype=torch.uint8)
    poisoned = clean.clone()
    poisoned[0, 1, 2, 3] = 116  # one value of 192 off by 16: MSE = 256 / 192 = 4/3
    got = psnr(poisoned, clean)
    assert got[0].item() == pytest.approx(10 * math.log10(255**2 * 3 / 4))  # 46.8814 dB
    assert got[0].item() == pytest.approx(46.8814, abs=1e-4)
    assert got[1].item() == math.inf  # unchanged


def test_ssim_by_hand():
    # constant windows: no variance, no covariance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) at every position
    a = torch.full((1, 3, 9, 9), 100, dtype=torch.uint8)
    b = torch.full((1, 3, 9, 9), 110, dtype=torch.uint8)
    assert ssim(b, a).item() == pytest.approx((2 * 100 * 110 + C1) / (100**2 + 110**2 + C1))  # 0.995477
    assert ssim(b, a).item() == pytest.approx(0.995477, abs=1e-6)
    # one 7x7 window (one position): x holds 0 and 60 on a checkerboard (25 and 24 pixels), y = x with every 60 at 30
    x = torch.zeros(1, 1, 7, 7, dtype=torch.uint8)
    x.view(-1)[1::2] = 60
    y = (x // 2).to(torch.uint8)
    n = 49
    mx, my = 24 * 60 / n, 24 * 30 / n
    vx = (24 * (60 - mx) ** 2 + 25 * mx**2) / (n - 1)  # sample variances and covariance
    vy = (24 * (30 - my) ** 2 + 25 * my**2) / (n - 1)
    cxy = (24 * (60 - mx) * (30 - my) + 25 * mx * my) / (n - 1)
    want = (2 * mx * my + C1) * (2 * cxy + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    assert ssim(y, x).item() == pytest.approx(want, rel=1e-12)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (3, 20, 24), (3, 5, 6)])
def test_ssim_and_psnr_equal_scikit_image(shape):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    g = torch.Generator().manual_seed(sum(shape))
    clean = torch.randint(0, 256, (6, *shape), generator=g, dtype=torch.uint8)
    noise = torch.randint(-40, 41, clean.shape, generator=g)
    poisoned = (clean.int() + noise).clamp(0, 255).to(torch.uint8)
    win = ssim_window(*shape[1:])
    ours_s, ours_p = ssim(poisoned, clean), psnr(poisoned, clean)
    for k in range(len(clean)):
        a, b = clean[k].permute(1, 2, 0).numpy(), poisoned[k].permute(1, 2, 0).numpy()
        want = structural_similarity(a, b, channel_axis=-1, data_range=255, win_size=win)
        assert ours_s[k].item() == pytest.approx(want, abs=1e-12)
        assert ours_p[k].item() == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-12)


def test_summary_means_worst_images_and_unchanged_ones():
    clean = torch.full((4, 3, 8, 8), 100, dtype=torch.uint8)
    clean[:, :, ::2] = 50  # not constant
    poisoned = clean.clone()
    poisoned[1] += 2  # every value off by 2: MSE 4
    poisoned[2] += 8  # MSE 64: the worst
    indices = torch.tensor([7, 3, 11, 5])  # dataset positions, as a poison's indices
    got = imperceptibility(poisoned, clean, indices)
    assert got["images"] == 4 and got["unchanged"] == 2 and got["ssim_images"] == 4
    p1, p2 = 10 * math.log10(255**2 / 4), 10 * math.log10(255**2 / 64)
    assert got["psnr_mean"] == pytest.approx((p1 + p2) / 2)  # the unchanged images (infinite PSNR) left out
    assert got["psnr_worst"] == pytest.approx(p2) and got["psnr_worst_index"] == 11
    assert got["ssim_worst_index"] == 11 and got["ssim_worst"] < 1
    assert got["ssim_mean"] == pytest.approx(float(ssim(poisoned, clean).mean()))
    assert "7x7 uniform window" in got["settings"]
    json.dumps(got, allow_nan=False)  # plain, finite JSON: as a poison's metadata keeps it
    same = imperceptibility(clean, clean, indices)
    assert same["unchanged"] == 4 and same["psnr_mean"] is None and same["psnr_worst_index"] is None
    assert same["ssim_mean"] == pytest.approx(1.0)
    tiny = imperceptibility(clean[:, :, :2, :2], clean[:, :, :2, :2], indices)  # too small for any SSIM window
    assert tiny["ssim_mean"] is None and tiny["ssim_images"] == 0


def test_ssim_reads_an_even_selection_past_its_bound():
    g = torch.Generator().manual_seed(3)
    clean = torch.randint(0, 256, (10, 3, 8, 8), generator=g, dtype=torch.uint8)
    poisoned = (clean.int() + torch.randint(-9, 10, clean.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    got = imperceptibility(poisoned, clean, torch.arange(10), max_ssim_values=4 * 3 * 8 * 8)
    assert got["ssim_images"] == 4 and got["images"] == 10
    rows = torch.tensor([0, 3, 6, 9])  # evenly spaced
    assert got["ssim_mean"] == pytest.approx(float(ssim(poisoned[rows], clean[rows]).mean()))


# ---- in a poison's metadata ---------------------------------------------------------------------------------------
def test_a_crafted_poison_records_them_outside_its_content_hash(ops, scenes, tmp_path):
    q = ops.meta.imperceptibility
    assert q == imperceptibility(ops.images, scenes.images[ops.indices], ops.indices)
    assert q["images"] == len(ops) and 20 < q["psnr_mean"] < 100 and 0 < q["ssim_mean"] <= 1
    assert 0 <= q["psnr_worst_index"] < len(scenes) and q["psnr_worst_index"] in ops.indices.tolist()
    bare = replace(ops, meta=replace(ops.meta, imperceptibility={}))
    assert bare.content_hash() == ops.content_hash()  # derived numbers: the same poison either way
    ops.save(tmp_path / "p.safetensors")
    back = Poison.load(tmp_path / "p.safetensors")
    assert back.meta.imperceptibility == q and back.content_hash() == ops.content_hash()
    assert back.fraction(0.5, seed=0).meta.imperceptibility == {}  # a share's numbers are not the whole's


def test_a_poison_file_written_before_them_loads_with_the_same_hash(ops, scenes, tmp_path):
    from safetensors.torch import save

    fields = {k: v for k, v in asdict(ops.meta).items() if k != "imperceptibility"}  # an earlier uebench's header
    tensors = {"images": ops.images, "labels": ops.labels, "indices": ops.indices}
    header = {"uebench_poison": json.dumps(fields), "uebench_content_sha256": ops.content_hash()}
    (tmp_path / "old.safetensors").write_bytes(save(tensors, metadata=header))
    old = Poison.load(tmp_path / "old.safetensors")  # its content hash verifies
    assert old.meta.imperceptibility == {} and old.content_hash() == ops.content_hash()
    assert old.with_imperceptibility(scenes).meta.imperceptibility == ops.meta.imperceptibility
    with pytest.raises(UserError, match="must be dict"):
        Poison.load(_with_header(tmp_path, ops, imperceptibility=[1]))


def _with_header(tmp_path, poison, **meta):
    from safetensors.torch import save

    fields = {**asdict(poison.meta), **meta}
    tensors = {"images": poison.images, "labels": poison.labels, "indices": poison.indices}
    header = {"uebench_poison": json.dumps(fields), "uebench_content_sha256": poison.content_hash()}
    (tmp_path / "edited.safetensors").write_bytes(save(tensors, metadata=header))
    return tmp_path / "edited.safetensors"


def test_an_unpaired_poison_has_none(scenes):
    images = scenes.images.clone()
    meta = replace(craft("ops", scenes, seed=0, progress=False).meta, imperceptibility={})
    unpaired = Poison(images, scenes.labels.clone(), torch.arange(len(images)), meta, paired=False)
    assert unpaired.with_imperceptibility(scenes) is unpaired
    with pytest.raises(UserError, match="measuring PSNR and SSIM compares each poisoned image"):
        unpaired.measure_imperceptibility(scenes)


def test_craft_prints_them(tmp_path, capsys):
    out = tmp_path / "ops.safetensors"
    code = main(
        ["craft", "--attack", "ops", "--dataset", "scenes", "--data-option", "n_train=40", "--quiet"]
        + [
            "--out",
            str(out),
        ]
    )
    stdout, err = capsys.readouterr()
    assert code == 0, err
    shown = json.loads(stdout.splitlines()[0])["imperceptibility"]
    saved = Poison.load(out).meta.imperceptibility
    assert shown == {k: v for k, v in saved.items() if k != "settings"} and shown["images"] == 40


# ---- in the report -----------------------------------------------------------------------------------------------
def test_report_rows_and_poison_table_show_them_or_a_dash(ops):
    from uebench.report.bench_page import _quality
    from uebench.report.results import poison_quality
    from uebench.report.tables import RUN_COLUMNS

    q = ops.meta.imperceptibility
    row = poison_quality(asdict(ops.meta))
    assert row == {
        "poison_psnr_mean": q["psnr_mean"],
        "poison_psnr_worst": q["psnr_worst"],
        "poison_ssim_mean": q["ssim_mean"],
        "poison_ssim_worst": q["ssim_worst"],
    }
    assert set(row) <= set(RUN_COLUMNS)
    assert poison_quality(None) == dict.fromkeys(row)  # a clean run
    assert poison_quality({"norm": "linf"}) == dict.fromkeys(row)  # a file of an earlier uebench
    assert poison_quality({"imperceptibility": {"psnr_mean": "high"}}) == dict.fromkeys(row)  # not numbers: ignored
    cell = _quality(q, "psnr", 2)
    assert cell == f"{q['psnr_mean']:.2f} ({q['psnr_worst']:.2f}, image {q['psnr_worst_index']})"
    assert _quality({}, "ssim", 4) == "-"


def test_bench_measures_a_user_poison_and_its_report_shows_them(tmp_path):
    """A user's poison written without the numbers is measured when the bench copies it in (the clean images are at
    hand there); a poison file in the folder without them (an earlier uebench's) reads as '-'."""
    import csv

    from uebench.experiments.bench.run import BenchConfig, SALSettings, run_bench
    from uebench.report.bench_report import write_bench_report

    scenes = load("scenes", n_train=40, n_test=20)
    crafted = craft("ops", scenes, seed=1, progress=False)
    user = replace(crafted, meta=replace(crafted.meta, imperceptibility={}))
    user.save(tmp_path / "mine.safetensors")
    config = BenchConfig(
        preset="test",
        dataset="scenes",
        dataset_options={"n_train": 40, "n_test": 20},
        attacks=(),
        poisons=(str(tmp_path / "mine.safetensors"),),
        width=0.125,
        recipe="quick",
        epochs=1,
        batch_size=20,
        sal=SALSettings(mode="fast", rounds=1, subset=8),
        precision="fp32",
    )
    out = tmp_path / "b"
    run_bench(config, out, progress=False, log=None)
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    poisoned = next(r for r in rows if r["poison"])
    copied = Poison.load(out / poisoned["poison"])
    assert copied.content_hash() == user.content_hash()  # the same poison, now with its numbers
    q = copied.meta.imperceptibility
    assert q == imperceptibility(user.images, scenes.images[user.indices], user.indices)
    assert (
        float(poisoned["poison_psnr_mean"]) == q["psnr_mean"]
        and float(poisoned["poison_ssim_worst"]) == q["ssim_worst"]
    )
    clean = next(r for r in rows if not r["poison"])
    assert clean["poison_psnr_mean"] == ""
    results = json.loads((out / "results.json").read_text())
    assert results["poisons"][0]["meta"]["imperceptibility"] == q
    html = (out / "report.html").read_text()
    assert "PSNR dB: mean (worst image)" in html and f"{q['psnr_mean']:.2f} ({q['psnr_worst']:.2f}, image" in html
    # the same file as an earlier uebench wrote it: the report shows '-' and results.csv leaves the cells empty
    bare = replace(copied, meta=replace(copied.meta, imperceptibility={}))
    bare.save(out / poisoned["poison"])
    write_bench_report(out)
    with open(out / "results.csv") as f:
        assert next(r for r in csv.DictReader(f) if r["poison"])["poison_psnr_mean"] == ""
    assert f"{q['psnr_mean']:.2f} (" not in (out / "report.html").read_text()
