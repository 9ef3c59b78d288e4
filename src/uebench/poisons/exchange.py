"""Bring your own poison: read poisoned images made elsewhere, write ours for other tools.

Layouts read (`import_poison`, through the readers of uebench.poisons.formats, these two among the released formats):
- a folder of PNGs named by the index of the clean training image they replace (`0.png` ... `N-1.png`), found
  at any depth. This is what APBench writes: `<root>/data/<idx>.png` for CIFAR/SVHN, and
  `<root>/<label>/<idx>.png` for ImageNet-100 (one folder per class); the autoregressive-poisoning code writes
  `<root>/data/<idx>.png` too. An index may appear only once. A folder may hold fewer images than the dataset
  (a partial poison).
- an .npz with a uint8 array `images` (N, H, W, C) or (N, C, H, W) (or (N, H, W) for one channel; when both
  readings fit, (N, C, H, W) wins), optional `indices` (N,) (required unless N is the dataset's size: then image
  i replaces clean image i) and optional `labels` (N,), checked against the dataset's.

Layout written (`export_png`): `<out>/data/<idx>.png`, one lossless 8-bit PNG per poisoned image, plus
`<out>/uebench_poison.json` with the poison's metadata. Import reads it back to the same bytes and, given that
file, needs no --attack-name/--norm/--budget.

Every imported poison goes through Poison.check (budget on the baked bytes, labels, indices, no constant images)
before anything is written. Whether it is unpaired is the reader's finding alone (formats.Read.paired): a sidecar's
`extra` never sets it (nor `budget_checked`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import UserError
from ..core.io import dumps_json, loads_json, temp_prefix
from ..data.base import ImageDataset
from .formats import FORMATS, PNG_MODES, Options, Read, detect
from .poison import NORMS, Poison, PoisonMeta, check_budget, dataset_options

SIDECAR = "uebench_poison.json"
# what only the importer says about a poison, from what its reader found: a sidecar's own values are dropped
TRUST_KEYS = ("unpaired", "budget_checked")


# ---- reading ----------------------------------------------------------------------------------------
def read_sidecar(folder: Path) -> dict[str, Any]:
    p = folder / SIDECAR
    if not p.is_file():
        return {}
    try:
        side = loads_json(p.read_bytes(), str(p), finite=True)  # bounded: depth, integer size, no NaN
    except OSError as e:
        raise UserError(f"{p} cannot be read: {e.strerror or e}") from None
    if not isinstance(side, dict) or not isinstance(side.get("extra", {}), dict):
        raise UserError(f"{p} must hold a JSON object (attack, norm, budget, ...), with 'extra' an object if given")
    return {**side, "extra": {k: v for k, v in side.get("extra", {}).items() if k not in TRUST_KEYS}}


def import_poison(
    clean: ImageDataset,
    source: str | Path,
    *,
    attack: str | None = None,
    norm: str | None = None,
    budget: float | None = None,
    progress: bool = False,
    format: str = "auto",
    labels: str | Path | None = None,
    allow_pickle: bool = False,
    reproject: bool = False,
) -> Poison:
    """A checked Poison for `clean` (a training split) from a file or folder in one of uebench.poisons.formats.FORMATS.

    `reproject`: images over the budget (an honest export that rounded after clipping) are projected onto it and the
    metadata says how many; without it they are refused with how far over they are."""
    from .poison import bake

    source = Path(source)
    if not source.exists():
        raise UserError(f"poison source not found: {source}")
    fmt = detect(source) if format == "auto" else FORMATS.get(format).name
    reader = FORMATS.get(fmt)
    if labels is not None and not reader.takes_labels:
        raise UserError(f"--labels is read by the formats that keep labels apart (ntga, tap-npy), not by {fmt}")
    if allow_pickle and not reader.pickle:
        pickled = ", ".join(n for n in FORMATS.names() if FORMATS.get(n).pickle)
        raise UserError(f"--allow-pickle only applies to pickled formats ({pickled}); {fmt} is not one")
    if labels is not None and not Path(labels).exists():  # a FIFO or a device: its reader refuses it by name
        raise UserError(f"labels file not found: {labels}")
    got = reader.read(source, clean, Options(Path(labels) if labels else None, allow_pickle, progress))
    side = read_sidecar(source) if source.is_dir() else {}
    attack = attack or side.get("attack")
    side_norm = side.get("norm").lower() if isinstance(side.get("norm"), str) else side.get("norm")
    norm = norm.lower() if isinstance(norm, str) else norm  # --norm Linf, L2: the names are lower case from here on
    norm = norm or side_norm
    if budget is None and norm == side_norm:
        budget = side.get("budget")
    if not attack:
        raise UserError("--attack-name is required (no uebench_poison.json beside the images)")
    if norm is None:
        raise UserError(f"--norm is required; valid: {', '.join(NORMS)}")
    budget = check_budget(norm, budget, clean.shape)
    if not got.paired:
        return _unpaired(clean, got, source, fmt, str(attack), norm, budget, side)
    n = len(got.images) if got.images is not None else len(got.delta)
    indices = got.indices
    if indices is None:
        if n != len(clean):
            raise UserError(
                f"{source} holds {n} images and no 'indices' for {clean.name}/{clean.split} of {len(clean)}: "
                "say which training image each one replaces (an 'indices' array, or <index>.png names)"
            )
        indices = np.arange(n)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(clean)):
        raise UserError(f"{source} has indices outside [0, {len(clean)}) of {clean.name}/{clean.split}")
    idx = torch.from_numpy(indices.astype(np.int64))
    base = clean.images[idx]
    if got.delta is not None:
        delta = torch.from_numpy(got.delta)
    else:
        images = torch.from_numpy(np.ascontiguousarray(got.images))
        if images.shape != base.shape:
            raise UserError(f"{source}: images of shape {tuple(images.shape)} for {tuple(base.shape)} clean ones")
        delta = (images.float() - base.float()) / 255.0
    delta, projected = within_budget(delta, norm, budget, source, reproject)
    if got.delta is not None or projected:
        images = bake(base, delta, norm=norm, budget=budget)
    lab = clean.labels[idx].clone() if got.labels is None else torch.from_numpy(got.labels.astype(np.int64))
    keep = {k: side[k] for k in ("params", "variant", "seed", "craft_seconds", "epoch_equivalents") if k in side}
    extra = {**side.get("extra", {}), "imported_from": str(source), "format": fmt, **got.note}
    extra["dataset_options"] = extra.get("dataset_options") or dataset_options(clean)  # an export's own, else ours
    if projected:
        extra["reprojected_images"] = projected
    meta = PoisonMeta(
        attack=str(attack),
        dataset=clean.name,
        split=clean.split,
        dataset_size=len(clean),
        norm=norm,
        budget=budget,
        **{"variant": "imported", **keep},
        extra=extra,
    )
    poison = Poison(images, lab, idx, meta)
    poison.check(clean)
    return poison.with_imperceptibility(clean)  # measured here, whatever a sidecar said


def _unpaired(
    clean: ImageDataset, got: Read, source: Path, fmt: str, attack: str, norm: str, budget: float, side: dict
) -> Poison:
    """A release whose images cannot be paired with their clean originals: a whole training set of its own, its
    budget recorded as claimed and not checked (said on stderr, and in the metadata)."""
    import sys

    images = torch.from_numpy(np.ascontiguousarray(got.images))
    labels = torch.from_numpy(got.labels.astype(np.int64))
    extra = {**side.get("extra", {}), "imported_from": str(source), "format": fmt, **got.note, "unpaired": True}
    extra["dataset_options"] = extra.get("dataset_options") or dataset_options(clean)
    meta = PoisonMeta(
        attack=attack,
        dataset=clean.name,
        split=clean.split,
        dataset_size=len(images),
        norm=norm,
        budget=budget,
        variant="imported",
        extra=extra,
    )
    poison = Poison(images, labels, torch.arange(len(images)), meta, paired=False)
    poison.check(clean, unpaired=True)  # the reader found no mapping; training on it still needs the user's word
    print(
        f"warning: {source} cannot be paired with the clean images ({fmt}): its {norm} budget {budget:.6g} is "
        "recorded unchecked, it replaces the whole training set, and the shortcut and clean-train probes are off",
        file=sys.stderr,
    )
    return poison


def within_budget(
    delta: torch.Tensor, norm: str, budget: float, source: Path, reproject: bool
) -> tuple[torch.Tensor, int]:
    """The perturbation within its budget: as it is, projected onto it (`reproject`), or refused with how far over it
    is per image. Returns (delta, how many images were projected)."""
    if norm not in ("linf", "l2") or not len(delta):
        return delta, 0
    flat = delta.flatten(1)
    size = flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)
    over = size > budget + 1e-5
    if not over.any():
        return delta, 0
    if not reproject:
        worst = float(size.max())
        raise UserError(
            f"{source}: {int(over.sum())} of {len(delta)} images exceed the {norm} budget {budget:.6g} "
            f"(largest {worst:.6g}, {100 * (worst / budget - 1):+.2f}%). "
            "A few percent over: an export that rounds after "
            "clipping; pass --reproject to project them onto the budget (recorded in the metadata), or --budget with "
            "the bound. Far over: a wrong index mapping (image i must perturb dataset image indices[i]) or budget"
        )
    if norm == "linf":
        return delta.clamp(-budget, budget), int(over.sum())
    scale = torch.where(over, budget / size.clamp_min(1e-12), torch.ones_like(size))
    return delta * scale.view(-1, *([1] * (delta.ndim - 1))), int(over.sum())


# ---- writing --------------------------------------------------------------------------------------------
def _is_export(folder: Path) -> bool:
    """Whether `folder` provably holds an export uebench wrote: its sidecar (a poison's metadata, every field as
    export writes them) and a data/ folder of <index>.png files, nothing else. Only such a folder is replaced."""
    import dataclasses
    import re

    from ..core.lock import same_shape

    entries = {p.name: p for p in folder.iterdir()}
    side, data = entries.get(SIDECAR), entries.get("data")
    if set(entries) - {"data", SIDECAR} or side is None or side.is_symlink() or not side.is_file():
        return False
    try:
        if side.stat().st_size > 1 << 20 or not same_shape(
            loads_json(side.read_bytes(), str(side)), dict.fromkeys(f.name for f in dataclasses.fields(PoisonMeta))
        ):
            return False
    except (OSError, UserError):
        return False
    if data is None:
        return True
    if data.is_symlink() or not data.is_dir():
        return False
    return all(re.fullmatch(r"\d+\.png", f.name) and f.is_file() and not f.is_symlink() for f in data.iterdir())


def export_png(poison: Poison, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write `<out>/data/<idx>.png` for every poisoned image and `<out>/uebench_poison.json`; returns out.

    Written into a temporary folder beside `out` and renamed into place, so `out` is never half-written. One export
    into `out` at a time (a lock beside it): a second is refused in one line.
    """
    from ..core.lock import lock_beside

    out = Path(out)
    with lock_beside(out):  # taking it clears what a killed export left beside `out` (tagged with its dead pid)
        return _export_png(poison, out, overwrite)


def _export_png(poison: Poison, out: Path, overwrite: bool) -> Path:
    from PIL import Image

    c = poison.images.shape[1]
    if not poison.paired:  # <idx>.png names the clean image each one replaces, which an unpaired poison does not know
        raise UserError(f"'{poison.meta.attack}' is unpaired: export writes <index>.png files, and it has no indices")
    if c not in PNG_MODES:
        raise UserError(f"cannot write {c}-channel images as PNG")
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out} exists and is not a folder")
        if any(out.iterdir()):
            if not overwrite:
                raise UserError(f"{out} is not empty; pass --overwrite to replace an earlier export there")
            if not _is_export(out):
                raise UserError(
                    f"{out} is not provably an earlier export (only data/<index>.png and {SIDECAR} as uebench writes "
                    "them): uebench replaces nothing there; use another --out"
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=temp_prefix(out.name), suffix=".tmp"))
    try:
        data = tmp / "data"
        data.mkdir()
        arr = poison.images.permute(0, 2, 3, 1).contiguous().numpy()
        for k, idx in enumerate(poison.indices.tolist()):
            img = arr[k, :, :, 0] if c == 1 else arr[k]
            Image.fromarray(img).save(data / f"{idx}.png")
        (tmp / SIDECAR).write_text(dumps_json(asdict(poison.meta), indent=2, sort_keys=True) + "\n")
        if out.exists():
            trash = Path(tempfile.mkdtemp(dir=out.parent, prefix=temp_prefix(out.name), suffix=".tmp"))
            os.replace(out, trash / "old")
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
