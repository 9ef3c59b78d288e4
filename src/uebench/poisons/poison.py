"""The Poison artifact: baked uint8 images, the dataset positions they replace, and what made them.

One safetensors file: tensors `images` (N, C, H, W) uint8, `labels` (N,) int64, `indices` (N,) int64,
and the JSON metadata under the header key "uebench_poison". A perturbation is baked into uint8 before any
augmentation, exactly what a victim downloads; every budget is checked on these baked bytes.

Nothing a file says about itself turns off a check. A file with `indices` is paired (image i replaces clean image
indices[i]) and gets every check: dataset size, indices, labels, budget, whatever its metadata claims. A file without
`indices` is unpaired (a release that lost the mapping, written only by an importer whose reader found none): its
images replace the whole training set and its budget cannot be checked, so it is used only where the user confirms
it (`--unpaired`, `unpaired=True`), and never when it would leave a class without an image.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from ..core.errors import UserError
from ..core.io import atomic_write_bytes, dumps_json, finite_json, loads_json, utf8_path
from ..data.base import ImageDataset

NORMS = ("linf", "l2", "l0", "none")
_META_TYPES = {
    "attack": (str,),
    "dataset": (str,),
    "dataset_size": (int,),
    "norm": (str,),
    "budget": (int, float),
    "split": (str,),
    "params": (dict,),
    "variant": (str,),
    "seed": (int,),
    "craft_seconds": (int, float),
    "epoch_equivalents": (int, float),
    "versions": (dict,),
    "created": (str,),
    "extra": (dict,),
    "imperceptibility": (dict,),
}
_KEY = "uebench_poison"
_HASH_KEY = "uebench_content_sha256"
VOLATILE_META = ("craft_seconds", "created")  # differ between two identical crafts; outside the content hash
# derived from the images (and their clean originals), so outside the content hash too: a file written before they
# were recorded, or whose numbers were computed later, keeps its hash
DERIVED_META = ("imperceptibility",)


BudgetRule = Callable[["PoisonMeta", ImageDataset], "float | None"]
_BUDGET_RULES: list[BudgetRule] = []


def register_budget_rule(rule: BudgetRule) -> None:
    """A rule for the most budget a crafting method's own settings allow (None: not its file). The attacks sit
    above this module, so they register their rule when `uebench.attacks` is imported (every command and the
    public API import it first); a file cannot claim more room than the method it names allows."""
    if rule not in _BUDGET_RULES:
        _BUDGET_RULES.append(rule)


def method_allowance(meta: "PoisonMeta", clean: ImageDataset) -> float | None:
    """The smallest budget any registered rule allows `meta` on `clean`, or None where no rule knows the method."""
    allowed = [a for rule in _BUDGET_RULES if (a := rule(meta, clean)) is not None]
    return min(allowed) if allowed else None


def check_budget(norm: str | None, budget: float | None, shape: tuple[int, int, int]) -> float:
    """A budget that makes sense for its norm on images of `shape` (C, H, W); returns it as a float."""
    if norm not in NORMS:
        raise UserError(f"unknown norm '{norm}'; valid: {', '.join(NORMS)}")
    if norm == "none":
        return 0.0 if budget is None else float(budget)
    if budget is None:
        raise UserError(f"--budget is required with norm {norm}")
    c, h, w = shape
    try:  # a number, or a number given as text (--budget 0.03, a sidecar's "0.03"); never a boolean
        b = math.nan if isinstance(budget, bool) else float(budget)
    except (TypeError, ValueError):
        b = math.nan
    if not math.isfinite(b) or b <= 0:
        raise UserError(f"budget must be positive and finite, got {budget!r:.40}")
    if norm == "linf" and b > 1:
        raise UserError(f"Linf budget {b} is above 1: budgets are in [0,1] pixel units (8/255 = 0.0314)")
    if norm == "l2" and b > math.sqrt(c * h * w):
        raise UserError(
            f"L2 budget {b} is larger than the whole image range ({math.sqrt(c * h * w):.4g}) for {c}x{h}x{w}"
        )
    if norm == "l0" and (not b.is_integer() or b > h * w):
        raise UserError(f"L0 budget must be a whole number of pixels in [1, {h * w}], got {b}")
    return b


@dataclass
class PoisonMeta:
    attack: str
    dataset: str
    dataset_size: int  # size of the full split the indices point into
    norm: str  # linf | l2 | l0 | none
    budget: float  # linf/l2: in [0,1] pixel units; l0: number of pixel positions
    split: str = "train"
    params: dict[str, Any] = field(default_factory=dict)
    variant: str = ""  # e.g. "paper" vs "public-code" where the two differ
    seed: int = 0
    craft_seconds: float = 0.0
    epoch_equivalents: float = 0.0  # crafting compute in passes over the crafting set
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # PSNR and SSIM against the clean originals (uebench.poisons.imperceptibility); {} where not measured: a file of
    # an earlier uebench, an unpaired poison
    imperceptibility: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a poison file is untrusted: every field read back from its JSON must have the type it is used as
        for name, types in _META_TYPES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, types):
                raise UserError(
                    f"poison metadata: '{name}' must be {' or '.join(t.__name__ for t in types)}, got {value!r:.60}"
                )
        if self.norm not in NORMS:
            raise UserError(f"unknown norm '{self.norm}'; valid: {', '.join(NORMS)}")
        if not math.isfinite(self.budget) or self.budget < 0:
            raise UserError(f"poison metadata: budget must be a finite number >= 0, got {self.budget!r}")
        if not self.versions:
            from .. import __version__

            self.versions = {"uebench": __version__, "torch": torch.__version__, "python": platform.python_version()}
        if not self.created:
            self.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class Poison:
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor  # unpaired: 0..N-1, a placeholder that is never saved
    meta: PoisonMeta
    # Whether image i is known to replace clean image indices[i]: the file's structure (it holds `indices`), never its
    # metadata. A release that lost that mapping (APBench's ImageNet-100 layout) is unpaired: it replaces the whole
    # training set, its budget cannot be checked, and no probe can compare it with clean originals.
    paired: bool = True

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise UserError(
                f"poison images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        for name, t in (("labels", self.labels), ("indices", self.indices)):
            if t.ndim != 1 or t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise UserError(f"poison {name} must be one integer per image, got {t.dtype} {tuple(t.shape)}")
        if not isinstance(self.paired, bool):
            raise TypeError(f"Poison.paired must be a bool, got {self.paired!r}")
        self.labels = self.labels.to(torch.int64)
        self.indices = self.indices.to(torch.int64)
        if not (len(self.images) == len(self.labels) == len(self.indices)):
            raise UserError(
                f"poison has {len(self.images)} images, {len(self.labels)} labels, {len(self.indices)} indices"
            )

    def __len__(self) -> int:
        return len(self.images)

    def require_paired(self, what: str) -> "Poison":
        """The poison itself, or one clear line saying that `what` needs the clean originals it lacks."""
        if not self.paired:
            raise UserError(
                f"{what} compares each poisoned image with its clean original; '{self.meta.attack}' is unpaired"
            )
        return self

    def fraction(self, share: float, seed: int) -> "Poison":
        """The poison on a seeded `share` of its images, the same share of every class (rounded per class, at least
        one image where the class has any): the rest of the training set stays clean (partial poisoning)."""
        if not (isinstance(share, (int, float)) and not isinstance(share, bool) and 0 < share <= 1):
            raise UserError(f"a poisoned fraction is in (0, 1], got {share!r}")
        if share == 1:
            return self
        self.require_paired("partial poisoning (a share of the poison mixed with clean images)")
        from ..core.seeds import generator, offset_stream

        g = generator(offset_stream(seed, 424_242))
        keep = []
        for c in torch.unique(self.labels).tolist():
            rows = (self.labels == c).nonzero().flatten()
            k = max(1, round(share * len(rows)))
            keep.append(rows[torch.randperm(len(rows), generator=g)[:k]])
        rows = torch.cat(keep).sort().values
        # the whole poison's PSNR and SSIM are not this share's
        meta = replace(self.meta, extra={**self.meta.extra, "poisoned_fraction": share}, imperceptibility={})
        return Poison(self.images[rows], self.labels[rows], self.indices[rows], meta)

    def measure_imperceptibility(self, clean: ImageDataset) -> dict[str, Any]:
        """PSNR and SSIM of every poisoned image against its clean original (uebench.poisons.imperceptibility): the
        per-image means and the worst image of each, with its dataset index."""
        from .imperceptibility import imperceptibility

        self.require_paired("measuring PSNR and SSIM")
        return imperceptibility(self.images, clean.images[self.indices], self.indices)

    def with_imperceptibility(self, clean: ImageDataset) -> "Poison":
        """The poison with its PSNR and SSIM against `clean` in its metadata (the same content hash); an unpaired
        poison as it is (it has no clean originals to compare with)."""
        if not self.paired:
            return self
        return replace(self, meta=replace(self.meta, imperceptibility=self.measure_imperceptibility(clean)))

    # ---- checks -------------------------------------------------------------------------------------------
    def measure(self, clean: ImageDataset) -> dict[str, float]:
        """Largest per-image perturbation norms of the baked images, in [0,1] pixel units (l0: pixel positions)."""
        self.require_paired("measuring a perturbation")
        d = self.images.float() - clean.images[self.indices].float()
        d = d.flatten(1) / 255.0
        changed = (self.images != clean.images[self.indices]).any(dim=1).flatten(1)
        return {
            "linf": float(d.abs().max()) if len(d) else 0.0,
            "l2": float(d.norm(dim=1).max()) if len(d) else 0.0,
            "l0": float(changed.sum(dim=1).max()) if len(d) else 0.0,
        }

    def check(self, clean: ImageDataset, *, unpaired: bool = False) -> None:
        """Refuse a poison that does not belong to `clean` or breaks its budget (one clear line). `unpaired`: the
        caller (the user, or the reader that imported it) confirms that an unpaired poison may stand for the whole
        training set; it turns off no check of a paired one."""
        m = self.meta
        where = f"poison '{m.attack}' for {m.dataset}/{m.split}"
        if m.dataset != clean.name or m.split != clean.split:
            raise UserError(f"{where} does not match dataset {clean.name}/{clean.split}")
        if not self.paired:
            if not unpaired:
                raise UserError(
                    f"{where} is unpaired (no index mapping): its {len(self)} images would replace the whole training "
                    "set, its budget unchecked; pass --unpaired (unpaired=True in Python) to train on it as such"
                )
            self._check_options(clean)
            return self._check_unpaired(clean, where)
        if m.extra.get("unpaired") not in (None, False):  # only the file's structure says so, never its metadata
            raise UserError(
                f"{where} maps each image to a clean one, yet its metadata says 'unpaired': a file cannot switch off "
                "its own checks (a file an earlier uebench imported unpaired: import it again from its source)"
            )
        if not len(self):
            raise UserError(f"{where} holds no images")
        if m.dataset_size != len(clean):
            raise UserError(
                f"{where} was made for {m.dataset_size} images; this {clean.name}/{clean.split} has {len(clean)}"
            )
        self._check_options(clean)  # after the size, which says it plainest where the split's size differs
        self._check_shape(clean, where)
        if len(self) and (int(self.indices.min()) < 0 or int(self.indices.max()) >= len(clean)):
            raise UserError(f"{where} has indices outside [0, {len(clean)})")
        if len(torch.unique(self.indices)) != len(self.indices):
            raise UserError(f"{where} has repeated indices")
        if not torch.equal(self.labels, clean.labels[self.indices]):
            bad = int((self.labels != clean.labels[self.indices]).sum())
            raise UserError(f"{where}: {bad} labels differ from the dataset's at the same indices")
        flat = self.images.flatten(1)
        clean_flat = clean.images[self.indices].flatten(1)
        constant = (flat == flat[:, :1]).all(dim=1) & ~(clean_flat == clean_flat[:, :1]).all(dim=1)
        if constant.any():
            raise UserError(f"{where}: {int(constant.sum())} poisoned images are constant (degenerate perturbation)")
        if m.norm != "none":
            check_budget(m.norm, m.budget, tuple(clean.images.shape[1:]))  # finite, positive, in range for the norm
            allowed = method_allowance(m, clean)
            if allowed is not None and m.budget > allowed * (1 + 1e-6):
                raise UserError(
                    f"{where} claims a {m.norm} budget of {m.budget:.6g}, more than its settings allow ({allowed:.6g})"
                )
            got = self.measure(clean)[m.norm]
            # linf/l2 are compared on the uint8 grid: budget*255 with a hair of float slack
            slack = 0.0 if m.norm == "l0" else 1e-5
            if got > m.budget + slack:
                raise UserError(
                    f"{where} breaks its {m.norm} budget: {got:.6g} > {m.budget:.6g} "
                    f"(a mismatched index mapping shows up here too: poison i must perturb image indices[i])"
                )

    def _check_options(self, clean: ImageDataset) -> None:
        """A poison made for the same dataset with other options (scenes' difficulty, size, seed...) is refused as
        such, before its budget check would fail on images it was never made for. Compared only where both sides
        record them (a file of an earlier uebench records none), option by option where both name it."""
        made, here = self.meta.extra.get("dataset_options"), clean.meta.get("options")
        if not (made and isinstance(made, dict) and here and isinstance(here, dict)):
            return
        here = json.loads(json.dumps(here, default=str))  # as the file holds them: tuples as lists
        differ = sorted(k for k in made.keys() & here.keys() if made[k] != here[k])
        if differ:
            raise UserError(
                f"poison '{self.meta.attack}' was crafted on {self.meta.dataset} {_show(made, differ)}, this dataset "
                f"is {clean.name} {_show(here, differ)}: load the dataset with the options the poison was made for"
            )

    def _check_shape(self, clean: ImageDataset, where: str) -> None:
        if self.images.shape[1:] != clean.images.shape[1:]:
            raise UserError(
                f"{where} has images of shape {tuple(self.images.shape[1:])}, "
                f"dataset has {tuple(clean.images.shape[1:])}"
            )

    def _check_unpaired(self, clean: ImageDataset, where: str) -> None:
        """What can be checked without the clean originals: image shape, labels in range, every class present (the
        set replaces the whole training set: a class it lacks could never be predicted), no constant images."""
        self._check_shape(clean, where)
        if len(self) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= clean.num_classes):
            raise UserError(f"{where} has labels outside [0, {clean.num_classes})")
        counts = torch.bincount(self.labels, minlength=clean.num_classes)
        missing = (counts == 0).nonzero().flatten().tolist()
        if missing:
            raise UserError(
                f"{where} is unpaired: its {len(self)} images replace the whole training set, which needs at least one "
                f"image of each of the {clean.num_classes} classes; "
                f"it has none of class {', '.join(map(str, missing[:5]))}" + (" ..." if len(missing) > 5 else "")
            )
        flat = self.images.flatten(1)
        constant = (flat == flat[:, :1]).all(dim=1)
        if constant.any():
            raise UserError(f"{where}: {int(constant.sum())} poisoned images are constant")

    def apply(self, clean: ImageDataset, *, unpaired: bool = False) -> ImageDataset:
        """The training set a victim would see: clean images with the poisoned ones swapped in (an unpaired poison
        is the whole training set, with its own labels: only with `unpaired`, the user's confirmation)."""
        self.check(clean, unpaired=unpaired)
        if not self.paired:
            meta = {**clean.meta, "poison": self.meta.attack, "poison_fraction": 1.0, "unpaired": True}
            return ImageDataset(clean.name, clean.split, self.images, self.labels, clean.classes, meta=meta)
        images = clean.images.clone()
        images[self.indices] = self.images
        return clean.with_images(images, poison=self.meta.attack, poison_fraction=len(self) / max(len(clean), 1))

    # ---- file ---------------------------------------------------------------------------------------------
    def content_hash(self) -> str:
        """sha256 of what makes the poison: its tensors and its metadata without the fields that change between two
        identical crafts (craft_seconds, created) or are derived from the images (imperceptibility). Two crafts with
        the same settings and seed have the same content hash, though their files' bytes differ; compare this one (it
        is in the file and in `uebench craft`'s output)."""
        h = hashlib.sha256()
        for t in self._tensors().values():
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.contiguous().numpy().tobytes())
        stable = {k: v for k, v in asdict(self.meta).items() if k not in VOLATILE_META + DERIVED_META}
        h.update(json.dumps(finite_json(stable), sort_keys=True, default=str).encode())  # as saved: NaN is null
        return h.hexdigest()

    def _tensors(self) -> dict[str, torch.Tensor]:
        """What the file holds: an unpaired poison has no `indices` (its absence is what makes it unpaired)."""
        names = {"images": self.images, "labels": self.labels}
        return {**names, "indices": self.indices} if self.paired else names

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save

        tensors = {k: t.contiguous() for k, t in self._tensors().items()}
        metadata = {_KEY: dumps_json(asdict(self.meta), sort_keys=True), _HASH_KEY: self.content_hash()}
        atomic_write_bytes(path, save(tensors, metadata=metadata))

    @classmethod
    def load(cls, path: str | Path) -> "Poison":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise UserError(f"poison file not found: {path}")
        try:
            with utf8_path(path) as name, safe_open(name, framework="pt") as f:
                header = f.metadata() or {}
                paired = "indices" in f.keys()  # noqa: SIM118 (safe_open is not a dict)
                tensors = {k: f.get_tensor(k) for k in ("images", "labels", *(("indices",) if paired else ()))}
        except Exception as e:
            raise UserError(f"not a uebench poison file: {path} ({type(e).__name__}: {str(e)[:120]})") from None
        if _KEY not in header:
            raise UserError(f"not a uebench poison file: {path} (no '{_KEY}' metadata)")
        try:  # bounded, and strict: NaN or a 5,000-digit integer in a file is refused here, in one line
            fields = loads_json(header[_KEY], f"poison metadata in {path}", finite=True)
            if not isinstance(fields, dict):
                raise TypeError("not a JSON object")
            meta = PoisonMeta(**fields)
        except TypeError as e:
            raise UserError(f"poison metadata in {path} is malformed: {e}") from None
        except UserError as e:
            raise UserError(f"{path}: {e}") from None
        n = tensors["images"].shape[0] if tensors["images"].ndim else 0  # a 0-d tensor is refused just below
        indices = tensors["indices"] if paired else torch.arange(n)
        poison = cls(tensors["images"], tensors["labels"], indices, meta, paired=paired)
        if _HASH_KEY in header and header[_HASH_KEY] != poison.content_hash():  # files of older versions have none
            raise UserError(f"{path} does not match its own content hash: the file was altered after it was written")
        return poison


def _show(options: dict[str, Any], keys: list[str]) -> str:
    return repr({k: options[k] for k in keys})


def dataset_options(ds: ImageDataset) -> dict[str, Any]:
    """The loader options `ds` was made with (uebench.data.load records them), as a poison's metadata records them."""
    return json.loads(json.dumps(ds.meta.get("options", {}), default=str))


def is_paired_file(path: str | Path) -> bool:
    """Whether a poison file holds an index mapping (Poison.paired), read from its header alone; False for a file that
    is not a readable safetensors file (Poison.load says why)."""
    from safetensors import safe_open

    try:
        with utf8_path(path) as name, safe_open(name, framework="pt") as f:
            return "indices" in f.keys()  # noqa: SIM118 (safe_open is not a dict)
    except Exception:
        return False


def bake(
    clean_u8: torch.Tensor, delta: torch.Tensor, *, norm: str | None = None, budget: float | None = None
) -> torch.Tensor:
    """Add a float perturbation in [0,1] pixel units to uint8 images and quantise, keeping the budget.

    Given the poison's norm and budget, every element of the perturbation is rounded to the nearest grey level, as
    the authors' exports do (TAP, REM, AR; AR's create_ar_poisons_3channel.py writes x.mul(255).add_(0.5) as uint8).
    Truncation toward zero would take up to a grey level from every unsaturated element: -12.5% of mean |delta| on a
    delta uniform in [-8, 8]/255, and EM's 0.8/255 steps would bake to 0. Rounding keeps the budget the float delta
    met:
    - linf: the rounded delta is clamped to +-floor(255 budget) grey levels; a no-op when the budget is on the grid
      (8/255), and the bound when it is not (0.03 -> 7 grey levels, where rounding could reach 8);
    - l2: an image whose rounded delta's norm exceeds the budget is truncated instead (quantize_l2's output is on
      the grid already, so rounding reproduces it exactly);
    - l0 (and none): rounding never makes a zero element nonzero, so no new pixel position changes.
    Without a norm and budget (norm=None), bake truncates, which can only shrink every element, so any budget holds.
    Clipping to [0, 255] afterwards can only shrink an element further.
    """
    if norm is not None and norm not in NORMS:
        raise ValueError(f"unknown norm '{norm}'; valid: {', '.join(NORMS)}")
    d = delta.float() * 255.0
    # nudge by 1e-3 of a grey level so that 8/255 * 255 = 7.9999995 still lands on 8
    trunc = torch.trunc(d + torch.sign(d) * 1e-3)
    if norm is None or (norm in ("linf", "l2") and budget is None):
        step = trunc
    else:
        step = torch.round(d)
        if norm == "linf":
            k = math.floor(float(budget) * 255.0 + 1e-3)
            step = step.clamp_(-k, k)
        elif norm == "l2":
            over = step.flatten(1).norm(dim=1) > float(budget) * 255.0 + 1e-3  # the 1e-3 grey level of float slack
            step[over] = trunc[over]
    return (clean_u8.float() + step).clamp_(0, 255).to(torch.uint8)


def quantize_l2(delta: torch.Tensor, eps: float, chunk: int = 256) -> torch.Tensor:
    """Put an L2-bounded float perturbation on the uint8 grid with each image's norm as close to eps as it gets.

    Truncating toward zero keeps any budget but shrinks an L2 perturbation of a few grey levels per pixel by 10%
    or more; rounding each element can push its norm over the budget. Here each image's delta is scaled by (nearly)
    the largest factor whose rounded grey levels still have L2 norm <= eps: a few fixed-point steps
    s <- s * eps / ||round(s d)||, then bisection in a narrow bracket (within 1e-6 of the best factor). The result
    holds whole grey levels (k / 255), which bake() reproduces exactly; clipping to [0, 255] in bake() can only
    shrink it further.
    """
    out = torch.empty(delta.shape, dtype=torch.float32)
    flat_out = out.view(len(delta), -1)
    target = eps * 255.0
    for s in range(0, len(delta), chunk):
        d = delta[s : s + chunk].double().flatten(1) * 255.0
        flat_out[s : s + chunk] = (_fit_l2_grid(d, target) / 255.0).float()
    return out


def _fit_l2_grid(d: torch.Tensor, target: float) -> torch.Tensor:
    def rounded_norm(scale: torch.Tensor) -> torch.Tensor:
        return torch.round(d * scale[:, None]).norm(dim=1)

    norms = d.norm(dim=1).clamp_min(1e-12)
    scale = target / norms
    for _ in range(4):  # fixed point: rounding changes the norm by a little, correct for it
        r = rounded_norm(scale)
        scale = torch.where(r > 0, scale * target / r.clamp_min(1e-12), scale)
    # rounding moves each element by <= 0.5, so this factor is always feasible
    safe = ((target - 0.5 * d.shape[1] ** 0.5) / norms).clamp_min(0)
    lo, hi = scale * (1 - 2e-3), scale * (1 + 2e-3)
    lo = torch.where(rounded_norm(lo) <= target, lo, safe)
    hi = torch.maximum(hi, lo)
    for _ in range(12):
        mid = (lo + hi) / 2
        ok = rounded_norm(mid) <= target
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    return torch.round(d * lo[:, None])
