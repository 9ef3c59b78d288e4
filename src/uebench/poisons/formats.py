"""The formats poisons are released in, each read into poisoned uint8 images or a float perturbation of the clean ones.

    uebench import --from perturbation.pt --format em-pt --norm linf --budget 0.0314 --out em.safetensors
    uebench import --help                # lists these formats

One reader per format, registered by name (FORMATS). A reader returns what the file holds, `Read`: either the
poisoned images (uint8, as a victim would download them) or a float perturbation in [0,1] pixel units that
`uebench.poisons.exchange.import_poison` bakes onto the clean images (poison.bake: rounded to the grey-level grid as the
authors' exports do); with the images' dataset positions and labels where the file has them. Every result goes
through the same checks as a crafted poison (labels, indices, budget on the baked bytes).

Nothing here runs code from a file: tensors are read with `torch.load(weights_only=True)` (tensors and plain
containers only), numpy files without pickles; REM's and DUNE's pickles are parsed, behind `--allow-pickle`, without
unpickling (uebench.data.files.load_pickle: numpy arrays and plain values, nothing called). Nothing a file declares
is allocated before it is checked against the file's real size and against the dataset (`_bound`): an .npz member
that is not needed is never inflated, and only regular files are opened.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.errors import UserError
from ..core.progress import progress_bar
from ..core.registry import Registry
from ..data import files as untrusted
from ..data.base import ImageDataset
from ..data.files import MAX_NAME_DIGITS, check_zip, decimal_name, load_pickle, open_regular, read_bounded


@dataclass
class Read:
    images: np.ndarray | None = None  # uint8 (N, C, H, W): the poisoned images themselves
    delta: np.ndarray | None = None  # float (N, C, H, W), [0,1] pixel units, to add to the clean images
    indices: np.ndarray | None = None  # (N,) dataset positions; None: image i is dataset image i
    labels: np.ndarray | None = None  # (N,) class labels as the file gives them (checked against the dataset's)
    note: dict[str, Any] = field(default_factory=dict)  # what the metadata should say about the file
    paired: bool = True  # False: which clean image each one replaces is unknown (uebench.poisons.poison.Poison.paired)


@dataclass(frozen=True)
class Options:
    labels: Path | None = None  # a second file with the labels (NTGA's one-hot, TAP's numpy export)
    allow_pickle: bool = False
    progress: bool = False


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    read: Callable[[Path, ImageDataset, Options], Read]
    names: tuple[str, ...] = ()  # file-name patterns (fnmatch) that `--format auto` recognises
    takes_labels: bool = False  # reads --labels
    pickle: bool = False  # reads a pickle (--allow-pickle)


FORMATS: Registry[Format] = Registry("poison format")


def register_format(name: str, description: str, names: tuple[str, ...] = (), **flags: bool):
    def wrap(fn: Callable[[Path, ImageDataset, Options], Read]) -> Callable:
        FORMATS.register(name)(Format(name, description, fn, names, **flags))
        return fn

    return wrap


def detect(source: Path) -> str:
    """The format `--format auto` takes for a path: a folder is PNGs; a file by its suffix, where only one fits."""
    if source.is_dir():
        return "apbench-imagenet" if _integer_class_folders(source) else "png"
    fits = [n for n in FORMATS.names() if any(fnmatch(source.name, pat) for pat in FORMATS.get(n).names)]
    if len(fits) == 1:
        return fits[0]
    known = ", ".join(FORMATS.names())
    if not fits:
        raise UserError(f"cannot tell the format of {source}; pass --format, one of: {known}")
    raise UserError(f"{source} could be {' or '.join(fits)}; pass --format")


def _bound(clean: ImageDataset) -> int:
    """The most bytes an array read for `clean` may hold: a value per pixel of every image (or of every class's noise,
    where there are more classes than images) at the widest dtype, 8 bytes."""
    c, h, w = clean.shape
    return max(len(clean), clean.num_classes) * c * h * w * 8


def _labels_bound(clean: ImageDataset) -> int:
    """The most bytes a labels array may hold: a one-hot row of 8-byte values per image."""
    return max(len(clean), 1) * max(clean.num_classes, 1) * 8


# ---- PNG folders and .npz (the layouts APBench and uebench's export write) ---------------------------------------
_PNG = re.compile(r"^([0-9]+)\.png$", re.IGNORECASE)
PNG_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _pixels(img, path: Path, channels: int) -> np.ndarray:
    """The image as (H, W, channels) uint8, converting only where no information is lost."""
    target = PNG_MODES.get(channels)
    if target is None:
        raise UserError(f"cannot read {channels}-channel images from PNG files")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F", "1"):
        raise UserError(f"{path} is a mode-{img.mode} PNG (not 8 bits per channel); poisons must be 8-bit images")
    if img.mode == "P":
        img = img.convert("RGBA")
    arr = np.asarray(img)
    arr = arr[..., None] if arr.ndim == 2 else arr
    have = arr.shape[-1]
    if have in (2, 4) and channels in (1, 3):  # drop an alpha channel only when every pixel is opaque
        if (arr[..., -1] != 255).any():
            raise UserError(f"{path} has transparent pixels; poisons must be opaque {target} images")
        arr, have = arr[..., :-1], have - 1
    if have == channels:
        return arr
    if have == 1 and channels == 3:
        return np.repeat(arr, 3, axis=-1)
    if have == 3 and channels == 1:
        if not ((arr[..., 0] == arr[..., 1]) & (arr[..., 1] == arr[..., 2])).all():
            raise UserError(f"{path} is a colour image; the dataset is grayscale")
        return arr[..., :1]
    raise UserError(f"{path} has {have} channels; the dataset's images have {channels}")


def find_pngs(folder: Path) -> dict[int, Path]:
    """{index: path} of every <index>.png under folder (any depth); refuses unnamed or repeated indices."""
    found: dict[int, Path] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(".png"):
                continue
            m = _PNG.match(name)
            path = Path(root) / name
            idx = decimal_name(m.group(1)) if m else None
            if idx is None:
                raise UserError(
                    f"cannot tell which training image {path} replaces: files must be named by its index, e.g. 0.png"
                    + (f" (an index below 10**{MAX_NAME_DIGITS})" if m else "")
                )
            if idx in found:
                raise UserError(f"index {idx} appears twice: {found[idx]} and {path}")
            found[idx] = path
    if not found:
        raise UserError(f"no <index>.png files found under {folder}")
    return found


def read_png_folder(folder: Path, shape: tuple[int, int, int], progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, C, H, W) uint8, indices (N,)) sorted by index."""
    found = find_pngs(folder)
    indices = np.array(sorted(found), dtype=np.int64)
    return read_pngs([found[int(i)] for i in indices], shape, progress, f"read {folder}"), indices


def read_pngs(paths: list[Path], shape: tuple[int, int, int], progress: bool = False, what: str = "") -> np.ndarray:
    """The PNG files as (N, C, H, W) uint8; each must be a regular file, 8-bit and of the dataset's size (checked on
    its header, before its pixels are decoded)."""
    from PIL import Image

    c, h, w = shape
    images = np.empty((len(paths), c, h, w), dtype=np.uint8)
    bar = progress_bar(progress, len(paths), what, unit="img")
    for k, path in enumerate(paths):
        try:  # a FIFO or a device named 0.png is refused by open_regular, never waited on
            with open_regular(path) as f, Image.open(f) as img:
                if img.size != (w, h):
                    raise UserError(f"{path} is {img.size[0]}x{img.size[1]}; the dataset's images are {w}x{h}")
                img.load()
                arr = _pixels(img, path, c)
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"cannot read {path}: {type(e).__name__}: {str(e)[:120]}") from None
        if arr.shape[:2] != (h, w):
            raise UserError(f"{path} is {arr.shape[1]}x{arr.shape[0]}; the dataset's images are {w}x{h}")
        images[k] = arr.reshape(h, w, c).transpose(2, 0, 1)
        if bar:
            bar.update()
    if bar:
        bar.close()
    return images


def _subfolders(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _integer_class_folders(folder: Path) -> bool:
    """APBench's ImageNet-100 layout: every subfolder named by an integer label (TAP's class folders are names)."""
    subs = _subfolders(folder)
    return bool(subs) and all(decimal_name(d.name) is not None for d in subs)


def _npz_images(arr: np.ndarray, shape: tuple[int, int, int], path: Path) -> np.ndarray:
    c, h, w = shape
    if arr.dtype != np.uint8:
        raise UserError(
            f"{path}: images must be uint8 (0..255), got {arr.dtype}; "
            "if they are floats in [0,1], save np.round(x * 255).astype(np.uint8)"
        )
    if arr.ndim == 3 and c == 1 and arr.shape[1:] == (h, w):
        return arr[:, None]
    if arr.ndim == 4 and arr.shape[1:] == (c, h, w):
        return arr
    if arr.ndim == 4 and arr.shape[1:] == (h, w, c):
        return arr.transpose(0, 3, 1, 2)
    raise UserError(f"{path}: images of shape {arr.shape} fit neither (N, {c}, {h}, {w}) nor (N, {h}, {w}, {c})")


def read_npz(
    path: Path, shape: tuple[int, int, int], size: int | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(images (N, C, H, W) uint8, indices or None, labels or None). Only these three members are read, each once its
    header fits `size` images of `shape` (None: no bound); any other member is never inflated."""
    picked: list[str] = []

    def choose(names: list[str]) -> list[str]:
        key = next((k for k in ("images", "x", "data") if k in names), None)
        if key is None:
            rest = [k for k in names if k not in ("indices", "labels")]
            if len(rest) != 1:
                raise UserError(f"{path}: no 'images' array (found {', '.join(names) or 'nothing'})")
            key = rest[0]
        picked.append(key)
        return [key, *(k for k in ("indices", "labels") if k in names)]

    def limit(name: str) -> int:  # 8 bytes a value: a wider dtype than uint8 is refused by name, after reading
        return 2**63 if size is None else size * 8 * (1 if name in ("indices", "labels") else math.prod(shape))

    arrays = untrusted.read_npz(path, choose, limit)
    images = np.ascontiguousarray(_npz_images(arrays[picked[0]], shape, path))
    indices = arrays.get("indices")
    labels = arrays.get("labels")
    for name, a in (("indices", indices), ("labels", labels)):
        if a is not None and (a.ndim != 1 or len(a) != len(images) or not np.issubdtype(a.dtype, np.integer)):
            raise UserError(f"{path}: '{name}' must be {len(images)} integers, got {a.dtype} {a.shape}")
    return images, indices, labels


# ---- array shapes -----------------------------------------------------------------------------------------------
def channels_first(a: np.ndarray, shape: tuple[int, int, int], what: str) -> np.ndarray:
    """(N, C, H, W) from (N, C, H, W), (N, H, W, C), or (N, H, W) for one channel."""
    c, h, w = shape
    if a.ndim == 3 and c == 1 and a.shape[1:] == (h, w):
        return a[:, None]
    if a.ndim == 4 and a.shape[1:] == (c, h, w):
        return a
    if a.ndim == 4 and a.shape[1:] == (h, w, c):
        return a.transpose(0, 3, 1, 2)
    raise UserError(f"{what}: shape {a.shape} fits neither (N, {c}, {h}, {w}) nor (N, {h}, {w}, {c})")


def float_images_to_u8(x: np.ndarray, what: str) -> np.ndarray:
    """Float images in [0, 1] (or [0, 255]) on the uint8 grid, as the victim's loader would store them."""
    if not np.isfinite(x).all():
        raise UserError(f"{what}: the images hold NaN or infinite values")
    scale = 255.0 if x.max() <= 1.0 + 1e-6 else 1.0
    if x.min() < -1e-6 or x.max() * scale > 255.0 + 1e-3:
        raise UserError(f"{what}: float images must lie in [0, 1] (or [0, 255]); got [{x.min():.4g}, {x.max():.4g}]")
    return np.clip(np.round(x * scale), 0, 255).astype(np.uint8)


def class_labels(y: np.ndarray, what: str) -> np.ndarray:
    """Integer labels from (N,) integers or (N, K) one-hot rows."""
    if y.ndim == 2:
        if not np.all((y == 0) | (y == 1)) or not np.all(y.sum(1) == 1):
            raise UserError(f"{what}: two-dimensional labels must be one-hot rows")
        return y.argmax(1)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or np.all(np.mod(y, 1) == 0)):
        raise UserError(f"{what}: labels must be N integers or N one-hot rows, got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def _npy(path: Path, max_bytes: int) -> np.ndarray:
    return untrusted.read_npy(path, max_bytes)


def _torch_file(path: Path, max_bytes: int) -> Any:
    """What a torch file holds, read weights-only: tensors and plain containers, no code runs; no member of the
    file may declare more than `max_bytes` (checked on the zip's directory before torch reads anything)."""
    import torch

    check_zip(path, max_bytes + 2**20, "a tensor file")  # + the pickled structure, which is small
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot read {path} as a tensor file: {type(e).__name__}: {str(e)[:120]}") from None


def _plain(t: Any, path: Path, what: str = "tensor") -> Any:
    """`t` if it is a dense CPU tensor of real numbers; sparse, meta-device, quantized, complex or boolean tensors are
    refused in one line (each would otherwise fail deep inside torch or numpy)."""
    import torch

    if not isinstance(t, torch.Tensor):
        raise UserError(f"{path}: the {what} is a {type(t).__name__}, not a tensor")
    kind = (
        f"a {str(t.layout).removeprefix('torch.')} tensor" if t.layout != torch.strided
        else "a meta-device tensor (no values)" if t.device.type == "meta"
        else f"a quantized tensor ({t.dtype})" if t.is_quantized
        else f"a {t.dtype} tensor on {t.device}" if t.is_complex() or t.dtype == torch.bool or t.device.type != "cpu"
        else None
    )  # fmt: skip
    if kind is not None:
        raise UserError(f"{path}: the {what} is {kind}; expected a dense tensor of real numbers")
    return t


def _tensor(path: Path, clean: ImageDataset) -> np.ndarray:
    import torch

    obj = _torch_file(path, _bound(clean))
    if isinstance(obj, dict):  # some releases wrap the tensor: take the one tensor there is
        tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
        if len(tensors) != 1:
            raise UserError(f"{path} holds {len(tensors)} tensors; expected the perturbation alone")
        obj = tensors[0]
    if not isinstance(obj, torch.Tensor):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a tensor")
    return _plain(obj, path, "perturbation").float().numpy()


def _perturbation(a: np.ndarray, clean: ImageDataset, what: str, note: dict[str, Any]) -> Read:
    """A float perturbation: sample-wise (N = the dataset) or class-wise (one row per class)."""
    if not np.isfinite(a).all():
        raise UserError(f"{what}: the perturbation holds NaN or infinite values")
    a = channels_first(a, clean.shape, what)
    if len(a) == len(clean):
        return Read(delta=a.astype(np.float32), note={**note, "layout": "sample-wise"})
    if len(a) == clean.num_classes:
        rows = a[clean.labels.numpy()]  # each image gets its class's noise
        return Read(delta=rows.astype(np.float32), note={**note, "layout": "class-wise"})
    raise UserError(
        f"{what}: {len(a)} perturbations fit neither the {len(clean)} images (sample-wise) nor the "
        f"{clean.num_classes} classes (class-wise) of {clean.name}/{clean.split}"
    )


# ---- the formats ------------------------------------------------------------------------------------------------
@register_format("png", "a folder of <index>.png (APBench, AR, uebench export; TAP's train/<class>/<idx>.png)")
def read_png(source: Path, clean: ImageDataset, opts: Options) -> Read:
    root = (source / "train").is_dir()
    if root:  # a release root (TAP: train/<class>/<idx>.png beside test/): the training half
        source = source / "train"
    elif _integer_class_folders(source):  # TAP names its class folders; APBench numbers them and has no train/
        raise UserError(
            f"{source} holds <label>/<j>.png folders, APBench's ImageNet-100 layout, where j is not the clean index; "
            "import it with --format apbench-imagenet"
        )
    images, indices = read_png_folder(source, clean.shape, opts.progress)
    return Read(images=images, indices=indices)


@register_format("npz", ".npz with uint8 `images` and optional `indices`, `labels`", ("*.npz",))
def read_npz_format(source: Path, clean: ImageDataset, opts: Options) -> Read:
    images, indices, labels = read_npz(source, clean.shape, len(clean))
    return Read(images=images, indices=indices, labels=labels)


@register_format("npy", ".npy of uint8 poisoned images, or of a float perturbation in [0,1] pixel units", ("*.npy",))
def read_npy(source: Path, clean: ImageDataset, opts: Options) -> Read:
    a = _npy(source, _bound(clean))
    if a.dtype == np.uint8:
        return Read(images=channels_first(a, clean.shape, str(source)))
    if np.issubdtype(a.dtype, np.floating):
        return _perturbation(a, clean, str(source), {"source_dtype": str(a.dtype)})
    raise UserError(f"{source}: a .npy poison is uint8 images or a float perturbation, got {a.dtype}")


@register_format(
    "em-pt",
    "EM's perturbation.pt: float noise in [-eps, eps], sample-wise (N, C, H, W) or class-wise (K, C, H, W)",
    ("*perturbation.pt",),
)
def read_em(source: Path, clean: ImageDataset, opts: Options) -> Read:
    return _perturbation(_tensor(source, clean), clean, str(source), {"release": "unlearnable-examples (EM)"})


@register_format(
    "ucl-pt", "unsupervised UEs' perturbations.pt (UCL, TUE): float sample-wise noise", ("*perturbations.pt",)
)
def read_ucl(source: Path, clean: ImageDataset, opts: Options) -> Read:
    return _perturbation(_tensor(source, clean), clean, str(source), {"release": "unsupervised UEs (UCL/TUE)"})


@register_format(
    "rem-pkl",
    "REM's *-def-noise.pkl: pickled int8 noise (N, C, H, W) in grey levels (needs --allow-pickle)",
    ("*def-noise.pkl",),
    pickle=True,
)
def read_rem(source: Path, clean: ImageDataset, opts: Options) -> Read:
    if not opts.allow_pickle:
        raise UserError(
            f"{source} is a pickle: reading one can run code; pass --allow-pickle if you trust it "
            "(uebench reads numpy arrays from it and refuses anything else)"
        )
    bound = _bound(clean)
    a = load_pickle(read_bounded(source, bound + 2**16, "REM's noise for this dataset"), str(source), bound)
    if not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.integer):
        raise UserError(f"{source}: expected REM's integer noise array, got {type(a).__name__}")
    return _perturbation(a.astype(np.float32) / 255.0, clean, str(source), {"release": "REM", "noise": "int8 grey"})


def _images_and_labels(source: Path, clean: ImageDataset, opts: Options, release: str) -> Read:
    x = _npy(source, _bound(clean))
    images = channels_first(
        x if x.dtype == np.uint8 else float_images_to_u8(x.astype(np.float64), str(source)), clean.shape, str(source)
    )
    labels = (
        class_labels(_npy(opts.labels, _labels_bound(clean)), str(opts.labels)) if opts.labels is not None else None
    )
    if labels is not None and len(labels) != len(images):
        raise UserError(f"{opts.labels}: {len(labels)} labels for {len(images)} images")
    return Read(images=images, labels=labels, note={"release": release, "source_dtype": str(x.dtype)})


@register_format(
    "ntga", "NTGA's float .npy images in [0,1] (N, H, W, C), one-hot labels in --labels", takes_labels=True
)
def read_ntga(source: Path, clean: ImageDataset, opts: Options) -> Read:
    return _images_and_labels(source, clean, opts, "NTGA")


@register_format(
    "tap-npy", "TAP's numpy export: float (or uint8) images .npy, labels .npy in --labels", takes_labels=True
)
def read_tap_numpy(source: Path, clean: ImageDataset, opts: Options) -> Read:
    return _images_and_labels(source, clean, opts, "TAP (numpy export)")


@register_format(
    "apbench-imagenet",
    "APBench's ImageNet-100 export <label>/<j>.png: unpaired (j is a position in an unseeded subset), labels from "
    "the folder names, budget unchecked",
)
def read_apbench_imagenet(source: Path, clean: ImageDataset, opts: Options) -> Read:
    """APBench's `export_imagenet_poison` writes image j of its training subset to `<label>/<j>.png`. That subset is
    `random.sample` per class with no seed (util.py SubsetImageFolder), so j names no clean image and the images
    cannot be paired with their originals: the poison is read as a whole training set with its own labels.

    The labels are the folder names read as integers. APBench's own loader reads the folders with torchvision's
    ImageFolder, which numbers them in string order ('10' before '2'), so its training labels are a permutation of
    the folder labels; uebench does not reproduce that.
    """
    folders = _subfolders(source)
    if not folders:
        raise UserError(f"{source}: no <label>/ folders (APBench's ImageNet layout is <label>/<j>.png)")
    bad = [d.name for d in folders if decimal_name(d.name) is None]
    if bad:
        raise UserError(f"{source}: class folder '{bad[0]}' is not an integer label (APBench names them 0..K-1)")
    paths, labels = [], []
    for d in sorted(folders, key=lambda d: decimal_name(d.name)):
        files = sorted(p for p in d.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))
        paths += files
        labels += [decimal_name(d.name)] * len(files)
    if not paths:
        raise UserError(f"no .png images under {source}/<label>/")
    images = read_pngs(paths, clean.shape, opts.progress, f"read {source}")
    return Read(
        images=images,
        labels=np.array(labels, dtype=np.int64),
        paired=False,
        note={"release": "APBench ImageNet-100", "labels_from": "folder names as integers", "budget_checked": False},
    )


# TAP normalises its images and keeps the perturbation in those units (its forest/consts.py, per dataset)
TAP_STD = {
    "cifar10": (0.24703224003314972, 0.24348513782024384, 0.26158785820007324),
    "cifar100": (0.2673342823982239, 0.2564384639263153, 0.2761504650115967),
    "mnist": (0.30810782313346863,),
    "imagefolder": (0.229, 0.224, 0.225),  # its ImageNet constants
}


@register_format(
    "tap-packed",
    "TAP's packed export poisons_packed_<date>.pth: [perturbation in normalised units, dataset ids]",
    ("poisons_packed_*.pth",),
)
def read_tap_packed(source: Path, clean: ImageDataset, opts: Options) -> Read:
    """`torch.save([poison_delta, poison_ids])` (Furnace.export_poison, mode 'packed'): poison_delta (P, C, H, W) in the
    dataset's normalised units (pixel delta = poison_delta * std per channel), poison_ids the P training positions it
    perturbs (a list of ints, sorted). Its png exports bake as round(255 * clamp(x + delta * std)), which is bake()."""
    import torch

    std = TAP_STD.get(clean.name)
    if std is None or len(std) != clean.shape[0]:
        raise UserError(f"tap-packed: TAP's normalisation is known for {', '.join(TAP_STD)}, not {clean.name}")
    obj = _torch_file(source, _bound(clean))
    if not (isinstance(obj, (list, tuple)) and len(obj) == 2 and isinstance(obj[0], torch.Tensor)):
        raise UserError(f"{source}: TAP's packed export is [poison_delta, poison_ids]; got {type(obj).__name__}")
    delta, ids = obj
    a = _plain(delta, source, "perturbation").float().numpy()
    ids = _plain(ids, source, "list of ids").numpy() if isinstance(ids, torch.Tensor) else ids
    try:
        ids = np.asarray(ids) if isinstance(ids, (list, tuple, np.ndarray)) else np.zeros((0, 0))
    except (ValueError, OverflowError):  # ragged lists, integers past int64
        ids = np.zeros((0, 0))
    if ids.ndim != 1 or len(ids) != len(a) or not np.issubdtype(ids.dtype, np.integer):
        raise UserError(f"{source}: {len(a)} perturbations need as many integer ids, got {ids.shape} {ids.dtype}")
    if not np.isfinite(a).all():
        raise UserError(f"{source}: the perturbation holds NaN or infinite values")
    a = channels_first(a, clean.shape, str(source)) * np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    note = {"release": "TAP (packed export)", "normalised_by": list(std)}
    return Read(delta=a.astype(np.float32), indices=ids.astype(np.int64), note=note)


# ---- DUNE's (image, label) pickle -------------------------------------------------------------------------------
PAIR_OVERHEAD = 1024  # bytes of pickle framing one pair may add to its image's bytes (about 40 at protocol 4)


@register_format(
    "dune-pkl",
    "DUNE's pickled list of (image, label) pairs, one per training image: CHW float images in [0,1] or raw RGB "
    "bytes, in DUNE's class-by-class order or the training order (needs --allow-pickle)",
    ("DUNE*.pkl", "dune*.pkl"),
    pickle=True,
)
def read_dune(source: Path, clean: ImageDataset, opts: Options) -> Read:
    """The layout DUNE (wxldragon/DUNE, ICML 2026) releases and trains from: `pickle.dump(data_list)` of a list of
    `(image, label)` pairs (generate_unlearnable.py, save_to_pkl), read back by utils_train.py's
    cifar10_training_data. No index: which clean image a pair replaces follows from the order alone.

    - image: a float array (C, H, W) in [0,1] (DUNE's generator writes `unl_samples.cpu().numpy()[k]`, float32), or
      C*H*W raw bytes. DUNE's loader turns a float image into uint8 by `(x.transpose(1, 2, 0) * 255).astype(uint8)`,
      truncating, and reads bytes with `Image.frombytes('RGB', (32, 32), b)`: pixel-interleaved (H, W, C), as PIL's
      `tobytes()` writes them, not CIFAR's channel planes. Both are read here exactly so: the images a DUNE victim
      trains on.
    - label: a Python int, checked against the dataset's classes.
    - order: DUNE's generator walks the classes in turn (a Subset of each class's training indices, not shuffled), so
      its list holds every class-0 image in training order, then every class-1 image, ...; a list in the training
      order itself is read too. Which of the two a file follows is told by its labels (they must match one of them);
      where the dataset is sorted by class the two are the same.

    Parsed without unpickling (uebench.data.files.load_pickle): numpy arrays of numbers, bytes, ints, lists and tuples
    only; a torch tensor or anything else a pickle names is refused by name. No array may be larger than one image at
    8 bytes a value, the file no larger than one such image (plus framing) per training image, and the list must
    hold exactly one pair per training image before the images are allocated."""
    if not opts.allow_pickle:
        raise UserError(
            f"{source} is a pickle: reading one can run code; pass --allow-pickle if you trust it "
            "(uebench reads numpy arrays, bytes and numbers from it and refuses anything else)"
        )
    c, h, w = clean.shape
    n, per_image = len(clean), c * h * w
    # protocol 2 writes bytes as latin-1 text: up to two bytes of file per byte of image
    limit = n * (2 * per_image * 8 + PAIR_OVERHEAD) + 2**16
    pairs = load_pickle(read_bounded(source, limit, "DUNE's pairs for this dataset"), str(source), per_image * 8)
    if not isinstance(pairs, list):
        raise UserError(f"{source}: expected DUNE's list of (image, label) pairs, got a {type(pairs).__name__}")
    if len(pairs) != n:
        raise UserError(
            f"{source} holds {len(pairs):,} (image, label) pairs; {clean.name}/{clean.split} has {n:,} training "
            "images. The layout has no index: it must hold one pair per training image, in DUNE's or the training order"
        )
    images = np.empty((n, c, h, w), dtype=np.uint8)
    labels = np.empty(n, dtype=np.int64)
    kinds: set[str] = set()
    for k, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise UserError(f"{source}: item {k} is a {type(pair).__name__}, not an (image, label) pair")
        image, label = pair
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < clean.num_classes:
            raise UserError(f"{source}: pair {k} has the label {label!r:.30}, not a class in [0, {clean.num_classes})")
        labels[k] = label
        images[k], kind = _dune_image(image, (c, h, w), f"{source}: pair {k}")
        kinds.add(kind)
    y = clean.labels.numpy()
    by_class = np.argsort(y, kind="stable")  # DUNE's order: class by class, each in training order
    if np.array_equal(labels, y):
        indices, order = None, "training order"
    elif np.array_equal(labels, y[by_class]):
        indices, order = by_class.astype(np.int64), "class by class, each in training order (DUNE's generator)"
    else:
        raise UserError(
            f"{source}: the labels follow neither the training order of {clean.name}/{clean.split} "
            f"({int((labels != y).sum()):,} of {n:,} differ) nor DUNE's class-by-class order "
            f"({int((labels != y[by_class]).sum()):,} differ): the pairs cannot be matched with their clean images"
        )
    note = {"release": "DUNE (image, label) pickle", "order": order, "images": " and ".join(sorted(kinds))}
    return Read(images=images, indices=indices, labels=labels, note=note)


def _dune_image(image: Any, shape: tuple[int, int, int], what: str) -> tuple[np.ndarray, str]:
    """One pair's image as (C, H, W) uint8, as DUNE's loader (utils_train.py) decodes it; and what it was."""
    c, h, w = shape
    if isinstance(image, (bytes, bytearray)):
        if len(image) != c * h * w:
            raise UserError(f"{what}: {len(image):,} bytes of image; {h}x{w}x{c} images take {c * h * w:,}")
        return np.frombuffer(bytes(image), dtype=np.uint8).reshape(h, w, c).transpose(2, 0, 1), "RGB bytes (H, W, C)"
    if not isinstance(image, np.ndarray):
        raise UserError(f"{what}: the image is a {type(image).__name__}; expected a float array or bytes")
    if image.shape != shape:
        raise UserError(f"{what}: an image of shape {image.shape}; the dataset's images are {shape} (C, H, W)")
    if not np.issubdtype(image.dtype, np.floating):
        raise UserError(f"{what}: a {image.dtype} image; DUNE's images are floats in [0, 1] (or raw bytes)")
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise UserError(f"{what}: image values outside [0, 1] (or NaN); DUNE clamps its images to [0, 1]")
    # as DUNE's loader: x * 255 in the array's own dtype, truncated to uint8 (float32 k/255 * 255 gives back k)
    return (image * image.dtype.type(255)).astype(np.uint8), f"{image.dtype} CHW in [0,1], x*255 truncated"
