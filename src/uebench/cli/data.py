"""`uebench data list|download`."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("data", help="list datasets or download one")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True, help="list | download")
    lp = dsub.add_parser("list", help="list datasets and the files each expects")
    lp.add_argument("--data-dir", default=None)
    lp.set_defaults(func=list_cmd)
    dp = dsub.add_parser("download", help="download a dataset from its official source, checking checksums")
    dp.add_argument("name")
    dp.add_argument("--data-dir", default=None)
    dp.add_argument("--quiet", action="store_true")
    dp.set_defaults(func=download_cmd)


def list_cmd(args) -> int:
    from ..data import data_root, list_datasets

    print(f"data folder: {data_root(args.data_dir)}")
    for info in list_datasets():
        where = "generated, no files" if not info.needs_files else ", ".join(info.files) or "see docs"
        dl = "downloadable" if info.downloads else "no download"
        print(f"  {info.name:12s} {info.description}  [{where}; {dl}]")
    return 0


def download_cmd(args) -> int:
    from ..core.errors import UserError
    from ..data import DATASETS, data_root
    from ..data.download import download

    info = DATASETS.get(args.name)
    if not info.downloads:
        raise UserError(f"dataset '{args.name}' has no official download (it is generated or user-provided)")
    path = download(args.name, data_root(args.data_dir), quiet=args.quiet)
    print(f"{args.name} ready in {path}")
    return 0
