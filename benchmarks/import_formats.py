"""One poison written in every released format uebench reads, imported back, and benched end to end.

For a poison (default: the efficacy study's EM on the CIFAR-10 subset) it writes the file or folder each release
writes (EM's perturbation.pt, UCL's perturbations.pt, REM's int8 pickle, TAP's numpy and packed exports and its
train/<class>/<idx>.png root, NTGA's float images with one-hot labels, plain .npy of images and of a delta, .npz,
uebench's own png export), imports each with `uebench.poisons.exchange.import_poison`, and prints per format whether the
imported bytes equal the original's (and how many pixels differ otherwise). Then it benches the imported poisons
(one run per distinct content: identical imports train identically) beside the original, in the bench preset given,
and prints the accuracy and shortcut rows:

    python benchmarks/import_formats.py --data-dir ../shared/data --out runs/import-formats

APBench's ImageNet layout (unpaired) is read by another path and is not in this round trip: its images cannot be
matched with the clean originals, which is what this script compares.
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from uebench.data import load
from uebench.experiments.bench.run import preset, run_bench
from uebench.poisons.exchange import export_png, import_poison
from uebench.poisons.formats import TAP_STD
from uebench.poisons.poison import Poison

DEFAULT_POISON = "runs/efficacy-study/poisons/em-b7f9ed0b5b2c-s0.safetensors"


def write_all(poison: Poison, clean, root: Path) -> dict[str, tuple[Path, dict]]:
    """{format: (path, extra import arguments)} for the poison written in each released layout."""
    idx = poison.indices
    base = clean.images[idx]
    delta = (poison.images.float() - base.float()) / 255.0  # on the grey-level grid already
    full = torch.zeros(clean.images.shape)
    full[idx] = delta
    out: dict[str, tuple[Path, dict]] = {}
    torch.save(full, root / "perturbation.pt")
    out["em-pt"] = (root / "perturbation.pt", {})
    torch.save({"perturbation": full}, root / "perturbations.pt")
    out["ucl-pt"] = (root / "perturbations.pt", {})
    (root / "rem-def-noise.pkl").write_bytes(pickle.dumps(np.round(full.numpy() * 255).astype(np.int8)))
    out["rem-pkl"] = (root / "rem-def-noise.pkl", {"allow_pickle": True})
    images = clean.images.clone()
    images[idx] = poison.images
    nhwc = images.permute(0, 2, 3, 1).numpy()
    np.save(root / "tap_images.npy", nhwc.astype(np.float64))  # TAP's numpy export: float64 0..255 (N, H, W, C)
    np.save(root / "tap_labels.npy", clean.labels.numpy().astype(np.float64))
    out["tap-npy"] = (root / "tap_images.npy", {"labels": root / "tap_labels.npy", "format": "tap-npy"})
    std = torch.tensor(TAP_STD[clean.name]).view(1, -1, 1, 1)
    torch.save([delta / std, idx.tolist()], root / "poisons_packed_2021-01-01.pth")
    out["tap-packed"] = (root / "poisons_packed_2021-01-01.pth", {})
    np.save(root / "ntga_x.npy", (nhwc / 255.0).astype(np.float32))
    np.save(root / "ntga_y.npy", np.eye(clean.num_classes, dtype=np.float32)[clean.labels.numpy()])
    out["ntga"] = (root / "ntga_x.npy", {"labels": root / "ntga_y.npy", "format": "ntga"})
    np.save(root / "images.npy", images.numpy())
    out["npy (uint8 images)"] = (root / "images.npy", {"format": "npy"})
    np.save(root / "delta.npy", full.numpy())
    out["npy (float delta)"] = (root / "delta.npy", {"format": "npy"})
    np.savez(root / "poison.npz", images=poison.images.numpy(), indices=idx.numpy(), labels=poison.labels.numpy())
    out["npz"] = (root / "poison.npz", {})
    export_png(poison, root / "export")
    out["png (uebench export)"] = (root / "export", {})
    for k, i in enumerate(idx.tolist()):  # TAP's full export: train/<class name>/<idx>.png at the release root
        folder = root / "tap_root" / "train" / clean.classes[int(poison.labels[k])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(poison.images[k].permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    (root / "tap_root" / "test").mkdir()
    out["png (TAP release root)"] = (root / "tap_root", {})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--poison", default=DEFAULT_POISON)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-bench", action="store_true", help="the round trip only")
    args = ap.parse_args()
    poison = Poison.load(args.poison)
    clean = load(poison.meta.dataset, args.data_dir, "train")
    m = poison.meta
    out = Path(args.out)
    (out / "imported").mkdir(parents=True, exist_ok=True)
    distinct: dict[str, str] = {}  # content of the images -> the first format that gave it
    print("| format | bytes equal to the original | pixels differing |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, extra) in write_all(poison, clean, Path(tmp)).items():
            got = import_poison(clean, path, attack=m.attack, norm=m.norm, budget=m.budget, **extra)
            order = torch.argsort(got.indices)
            same_idx = torch.equal(got.indices[order], torch.sort(poison.indices).values)
            mine = got.images[order]
            theirs = poison.images[torch.argsort(poison.indices)]
            differ = int((mine != theirs).sum()) if same_idx else -1
            print(f"| {name} | {'yes' if differ == 0 else 'no'} | {differ} |")
            key = mine.numpy().tobytes().hex()[:64] + str(differ)
            if key not in distinct:
                distinct[key] = name
                got.save(out / "imported" / f"{len(distinct)}-{name.split()[0]}.safetensors")
    if args.no_bench:
        return
    files = sorted(str(p) for p in (out / "imported").glob("*.safetensors"))
    config = replace(preset(args.preset), attacks=(), poisons=(args.poison, *files), data_dir=args.data_dir)
    result = run_bench(config, out / "bench", progress=False, log=None)
    print(result.table if hasattr(result, "table") else f"report: {out / 'bench' / 'report.html'}")


if __name__ == "__main__":
    main()
