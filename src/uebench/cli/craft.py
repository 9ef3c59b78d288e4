"""`uebench craft | attacks | import | export`: make a poison, list the attacks, bring your own, hand one out."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.errors import UserError
from . import add_common, add_renamed, parse_sets


def register(sub) -> None:
    p = sub.add_parser("craft", help="craft a poison (unlearnable examples) for a dataset's training split")
    add_common(p)
    p.add_argument("--attack", required=True, help="attack name (uebench attacks lists them)")
    add_renamed(
        p,
        "--attack-preset",
        "--preset",
        default="paper",
        help="paper (the original settings) or fast (shortened, where the attack has one) (default: %(default)s)",
    )
    p.add_argument("--subset", type=int, default=None, help="poison a seeded random subset of N images")
    add_renamed(
        p,
        "--attack-option",
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="attack parameter, e.g. eps=0.5 (repeatable)",
    )
    p.add_argument("--data-option", action="append", metavar="KEY=VALUE", help="dataset option, e.g. n_train=2000")
    p.add_argument("--out", required=True, help="poison file to write (.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(
        func=craft_cmd,
        interrupted="interrupted: nothing was written (a poison is written once, whole); rerun the command to craft it",
    )

    a = sub.add_parser("attacks", help="list the attacks with their norms, budgets and presets")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.set_defaults(func=attacks_cmd)

    from ..poisons.formats import FORMATS

    listing = "; ".join(f"{f.name}: {f.description}" for f in (FORMATS.get(n) for n in FORMATS.names()))
    i = sub.add_parser(
        "import",
        help="make a poison file from a poison made elsewhere (released formats: see --format)",
        description=f"Formats: {listing}.",
    )
    add_common(i)
    i.add_argument("--from", dest="source", required=True, help="the released file or folder")
    i.add_argument(
        "--format",
        default="auto",
        help=f"auto (by folder or file name) | {' | '.join(FORMATS.names())} (default: %(default)s)",
    )
    i.add_argument("--labels", default=None, help="a labels .npy beside the images (ntga: one-hot; tap-npy)")
    i.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read a pickle (rem-pkl, dune-pkl). A pickle can run code when read: uebench's reader accepts numpy "
        "arrays, bytes and numbers only, but pass this only for files you trust",
    )
    i.add_argument(
        "--reproject",
        action="store_true",
        help="project images over the budget (exports that round after clipping) onto it; recorded in the metadata",
    )
    i.add_argument(
        "--attack-name", default=None, help="name to record (default: from the folder's uebench_poison.json)"
    )
    i.add_argument("--norm", default=None, help="linf | l2 | l0 | none: the budget checked on the images")
    i.add_argument("--budget", type=float, default=None, help="the norm bound, [0,1] pixel units (l0: pixels)")
    i.add_argument("--data-option", action="append", metavar="KEY=VALUE", help="dataset option, e.g. n_train=2000")
    i.add_argument("--out", required=True, help="poison file to write (.safetensors)")
    i.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    i.set_defaults(func=import_cmd)

    e = sub.add_parser("export", help="write a poison's images as <index>.png files (the layout import reads)")
    e.add_argument("--poison", required=True, help="poison file")
    e.add_argument("--out", required=True, help="folder to write")
    e.add_argument("--overwrite", action="store_true", help="write into a folder that already holds files")
    e.set_defaults(func=export_cmd)


def _refuse_existing(path: str, overwrite: bool) -> None:
    """A poison goes to a file: refused before any work if one is there (without --overwrite), if a folder is there,
    or if its folder cannot be made."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{path} is a folder; --out names the poison file to write (e.g. {p / 'poison.safetensors'})")
    if p.suffix.lower() != ".safetensors":  # what is written is safetensors, whatever the name says
        named = p.with_suffix(".safetensors") if p.suffix and p.stem else Path(f"{path}.safetensors")
        raise UserError(f"--out {path}: a poison is written as a safetensors file; name it {named}")
    if p.exists() and not overwrite:
        raise UserError(f"{path} exists; pass --overwrite to replace it")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot write {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise UserError(f"cannot write {path}: {parent} is not writable")
            break


def _one_writer(path: str):
    """Held while a command makes the poison file `path`: a second command writing it at once (an import, a craft)
    is refused in one line instead of one silently replacing the other. Under torchrun rank 0 alone writes."""
    import contextlib

    from ..core.lock import lock_beside

    return lock_beside(path) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()


def craft_cmd(args) -> int:
    _refuse_existing(args.out, args.overwrite)
    with _one_writer(args.out):
        return _craft(args)


def _craft(args) -> int:
    from ..attacks import craft
    from ..attacks.base import ATTACKS, make_config
    from ..data import load
    from ..poisons.imperceptibility import summary

    params = parse_sets(args.attack_option, "--attack-option")
    make_config(
        ATTACKS.get(args.attack), args.attack_preset, **params
    )  # every option checked before the data is loaded
    if args.subset is not None and args.subset < 1:
        raise UserError(f"--subset must be >= 1, got {args.subset}")
    ds = load(args.dataset, args.data_dir, "train", **parse_sets(args.data_option))
    poison = craft(
        args.attack,
        ds,
        preset=args.attack_preset,
        seed=args.seed,
        subset=args.subset,
        progress=not args.quiet,
        **params,
    )
    from ..core.distributed import current

    if not current().main:  # under torchrun (EM crafts data-parallel) rank 0 alone writes the poison
        return 0
    _refuse_existing(args.out, args.overwrite)  # again: a file may have appeared there meanwhile
    poison.save(args.out)
    m = poison.meta
    measured = poison.measure(ds)
    print(
        json.dumps(
            {
                "attack": m.attack,
                "dataset": m.dataset,
                "images": len(poison),
                "norm": m.norm,
                "budget": m.budget,
                "measured": measured.get(m.norm),
                "imperceptibility": summary(m.imperceptibility),  # PSNR (dB) and SSIM against the clean images
                "craft_seconds": round(m.craft_seconds, 2),
                "epoch_equivalents": m.epoch_equivalents,
                "content_sha256": poison.content_hash(),
            }
        )
    )
    print(f"poison written to {args.out}")
    return 0


def attacks_cmd(args) -> int:
    from ..attacks import ATTACKS, make_config

    rows = []
    for name in ATTACKS.names():
        cls = ATTACKS.get(name)
        budget = cls(make_config(cls, "paper")).budget()
        rows.append(
            {
                "name": name,
                "norm": cls.norm,
                "budget": budget,
                "budget_note": getattr(cls, "budget_note", ""),
                "presets": ["paper", *cls.presets],
                "description": cls.description,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        b = "unbounded" if r["norm"] == "none" else f"{r['budget']:.4g}"
        b += f" ({r['budget_note']})" if r["budget_note"] else ""
        if r["norm"] == "linf":
            b += f" (= {r['budget'] * 255:.3g}/255)"
        print(f"{r['name']:6s} {r['norm']:4s} budget {b}  presets: {', '.join(r['presets'])}")
        print(f"       {r['description']}")
    return 0


def import_cmd(args) -> int:
    _refuse_existing(args.out, args.overwrite)
    with _one_writer(args.out):
        return _import(args)


def _import(args) -> int:
    from ..data import load
    from ..poisons.exchange import import_poison
    from ..poisons.imperceptibility import summary

    ds = load(args.dataset, args.data_dir, "train", **parse_sets(args.data_option))
    poison = import_poison(
        ds,
        args.source,
        attack=args.attack_name,
        norm=args.norm,
        budget=args.budget,
        progress=not args.quiet,
        format=args.format,
        labels=args.labels,
        allow_pickle=args.allow_pickle,
        reproject=args.reproject,
    )
    _refuse_existing(args.out, args.overwrite)  # again: a file may have appeared there meanwhile
    poison.save(args.out)
    m = poison.meta
    print(
        json.dumps(
            {
                "attack": m.attack,
                "dataset": m.dataset,
                "images": len(poison),
                "norm": m.norm,
                "budget": m.budget,
                "measured": poison.measure(ds) if poison.paired else None,  # unpaired: nothing to measure against
                "imperceptibility": summary(m.imperceptibility),
                "paired": poison.paired,
            }
        )
    )
    print(f"poison written to {args.out}")
    return 0


def export_cmd(args) -> int:
    from ..core.io import refuse_unsafe_folder
    from ..poisons.exchange import export_png
    from ..poisons.poison import Poison

    refuse_unsafe_folder(args.out, example="export")
    poison = Poison.load(args.poison)
    folder = export_png(poison, args.out, overwrite=args.overwrite)
    print(f"{len(poison)} images written to {folder}")
    return 0
