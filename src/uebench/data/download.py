"""Fetch a dataset's official files into the data folder: streamed, md5-checked, archives unpacked safely.

download("cifar10", Path("~/data").expanduser())
download("mnist", root, base_url="file:///mirror/mnist/")   # same file names, another host (tests, mirrors)
"""

from __future__ import annotations

import hashlib
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from ..core.errors import UserError
from ..core.io import remove_stale_temps, temp_prefix
from .registry import DATASETS

_CHUNK = 1 << 20
_ARCHIVES = (".tar.gz", ".tgz", ".tar")


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr)


def _stream(url: str, out, quiet: bool) -> str:
    """Copy url into the open file `out`; the md5 of what was written."""
    from ..core.progress import progress_bar

    h = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = progress_bar(not quiet, total, Path(url).name, unit="B")  # plain lines in a log, a bar on a terminal
            try:
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(block)
                    h.update(block)
                    if bar:
                        bar.update(len(block))
            finally:
                if bar:
                    bar.close()
    except (urllib.error.URLError, OSError, ValueError) as e:  # ValueError: malformed URL
        raise UserError(f"download of {url} failed: {getattr(e, 'reason', e)}") from None
    return h.hexdigest()


def fetch(url: str, folder: Path, filename: str, md5: str, *, quiet: bool = False) -> Path:
    """folder/filename with the given md5, downloaded unless already there. A bad download leaves nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / filename
    if dest.is_file():
        if md5sum(dest) == md5:
            _say(quiet, f"{dest}: present, md5 ok")
            return dest
        _say(quiet, f"{dest}: md5 mismatch, downloading again")
        dest.unlink()
    # a temp file beside the target, renamed only once verified, so a crash never leaves a half file under the real
    # name; tagged with this process, so the next download into the folder clears one a kill left
    remove_stale_temps(folder)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=temp_prefix(filename), suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _stream(url, out, quiet)
        if got != md5:
            raise UserError(f"md5 mismatch for {url}: got {got}, expected {md5}; nothing was kept")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    _say(quiet, f"{dest}: downloaded, md5 ok")
    return dest


def _check_member(member: tarfile.TarInfo, dest: Path, archive: Path) -> None:
    if not (member.isfile() or member.isdir()):
        raise UserError(f"unsafe archive {archive}: '{member.name}' is a link or special file; nothing extracted")
    target = (dest / member.name).resolve()
    if target != dest and dest not in target.parents:
        raise UserError(f"unsafe archive {archive}: '{member.name}' points outside {dest}; nothing extracted")


def extract(archive: Path, dest: Path) -> None:
    """Unpack a tar archive into dest, refusing any member that could land outside it."""
    dest = dest.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:  # check all before writing any
                _check_member(m, dest, archive)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **kwargs)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise UserError(f"corrupt archive {archive}: {type(e).__name__}: {e}") from None


def _unpack_once(archive: Path, md5: str, quiet: bool) -> None:
    # a stamp holding the archive's md5 says it was unpacked in full; a crash mid-way leaves no stamp
    stamp = archive.with_name(f".{archive.name}.extracted")
    if stamp.is_file() and stamp.read_text().strip() == md5:
        return
    _say(quiet, f"extracting {archive}")
    extract(archive, archive.parent)
    stamp.write_text(md5 + "\n")


def download(name: str, root: Path, *, quiet: bool = False, base_url: str | None = None) -> Path:
    """Fetch every (url, filename, md5) the dataset declares into root; `base_url` replaces each url's folder."""
    info = DATASETS.get(name)
    if not info.needs_files:
        raise UserError(f"{name} is generated in memory; there is nothing to download")
    if not info.downloads:
        raise UserError(f"no download is known for {name}; place {', '.join(info.files)} under {root} yourself")
    root = Path(root).expanduser()
    for url, filename, md5 in info.downloads:
        if base_url:
            url = f"{base_url.rstrip('/')}/{filename}"
        path = fetch(url, root, filename, md5, quiet=quiet)
        if filename.endswith(_ARCHIVES):
            _unpack_once(path, md5, quiet)
    return root
