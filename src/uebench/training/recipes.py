"""Named victim-training recipes. `paper` is the recipe of "How Far Are We from True Unlearnability?"."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from ..core.errors import UserError
from ..core.io import recorded
from ..core.options import MAX_EPOCHS, MAX_IMAGES, check_count
from ..core.registry import Registry

OPTIMIZERS = ("sgd", "adam")


# settings added after run configs existed, with their unset values: absent from a run's config.json while unset
ADDED_LATER = {"optimizer": "sgd"}


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "constant"  # constant | cosine | multistep
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    augment: str = "crop_flip"  # a key of uebench.data.augment.AUGMENTATIONS: crop_flip | crop | none
    description: str = ""
    optimizer: str = "sgd"  # sgd (momentum, weight_decay, nesterov) | adam (lr and weight_decay only)

    def __post_init__(self) -> None:
        from ..data.augment import AUGMENTATIONS

        if self.optimizer not in OPTIMIZERS:
            raise UserError(
                f"recipe '{self.name}': unknown optimizer '{self.optimizer}'; valid: {', '.join(OPTIMIZERS)}"
            )
        if self.augment not in AUGMENTATIONS:
            raise UserError(
                f"recipe '{self.name}': unknown augment '{self.augment}'; valid: {', '.join(AUGMENTATIONS)}"
            )
        for key, most in (("epochs", MAX_EPOCHS), ("batch_size", MAX_IMAGES)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserError(f"{key.replace('_', ' ')} must be a whole number >= 1, got {v}")
            check_count(v, key.replace("_", " "), most)
        if not (math.isfinite(self.lr) and self.lr > 0):  # NaN would otherwise surface only after an epoch
            raise UserError(f"lr must be a positive number, got {self.lr}")
        for key in ("momentum", "weight_decay", "gamma"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise UserError(f"{key.replace('_', ' ')} must be a finite number >= 0, got {getattr(self, key)}")

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch `epoch` (0-based); set once per epoch."""
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "cosine":
            return 0.5 * self.lr * (1 + math.cos(math.pi * epoch / self.epochs))
        if self.schedule == "multistep":
            return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)
        raise ValueError(f"unknown schedule {self.schedule}")

    def with_overrides(self, **kw) -> "Recipe":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def to_dict(self) -> dict:
        return recorded(asdict(self), ADDED_LATER)


RECIPES: Registry[Recipe] = Registry("recipe")


def _add(r: Recipe) -> None:
    RECIPES.register(r.name)(r)


_add(
    Recipe(
        "paper",
        50,
        256,
        0.1,
        description="the SAL/UD paper: SGD 0.1, m 0.9, wd 5e-4, batch 256, 50 epochs, constant lr, crop+flip",
    )
)
_add(
    Recipe(
        "apbench",
        200,
        256,
        0.1,
        schedule="multistep",
        milestones=(100, 200, 300),
        gamma=0.5,
        # lafeat/apbench train.py at 4d60c50: SGD 0.1, momentum 0.9, wd 5e-4, MultiStepLR([100, 200, 300], gamma=0.5)
        # stepped after each of its 200 epochs (so only the halving at 100 acts), batch 256 (128 before ed1d726)
        description="APBench train.py (4d60c50): 200 epochs, batch 256, lr x0.5 at 100 (its milestones 100/200/300)",
    )
)
_add(
    Recipe(
        "apbench-vit",
        200,
        256,
        1e-3,
        weight_decay=0.0,
        schedule="multistep",
        milestones=(100, 200, 300),
        gamma=0.5,
        optimizer="adam",
        # APBench train.py (4d60c50) trains vit and cait with Adam(lr=--lr), no weight decay, the same schedule; its
        # --lr default (0.1) is SGD's and it does not say which its ViT rows used: 1e-3 is Adam's own default
        description="APBench's ViT/CaiT training: Adam (lr 1e-3, no weight decay), 200 epochs, batch 256, x0.5 at 100",
    )
)
_add(
    Recipe(
        "apbench-imagenet",
        200,
        256,
        0.1,
        schedule="cosine",
        augment="flip_jitter",
        # lafeat/apbench imagenet_train.py (4d60c50): torchvision resnet18, SGD 0.1, m 0.9, wd 5e-4,
        # CosineAnnealingLR(T_max=200) over its 200 epochs, batch 256, and for poisoned data Resize(224) (the
        # imagefolder loader's resize), RandomHorizontalFlip, ColorJitter(0.4, 0.4, 0.4, 0.2)
        description="APBench imagenet_train.py (4d60c50): 200 epochs, batch 256, cosine, flip + colour jitter",
    )
)
_add(Recipe("em", 60, 128, 0.1, schedule="cosine", description="EM paper victim: 60 epochs, cosine"))
_add(Recipe("ar", 100, 128, 0.1, schedule="cosine", description="AR / LSP papers' victim: 100 epochs, cosine"))
_add(Recipe("quick", 10, 128, 0.1, schedule="cosine", description="CPU-sized: 10 epochs, batch 128, cosine"))
# The CPU regime where the published efficacy holds (docs/results/efficacy.md): at a few hundred SGD steps on a
# few thousand images, crop+flip keeps the class-wise shortcuts (LSP, OPS) from being picked up before the content.
_add(
    Recipe(
        "cpu",
        10,
        128,
        0.1,
        schedule="cosine",
        augment="none",
        description="CPU-sized, no augmentation: 10 epochs, batch 128, cosine (the cpu and quick bench presets)",
    )
)
_add(
    Recipe(
        "quick-crop",
        10,
        128,
        0.1,
        schedule="cosine",
        augment="crop",
        description="quick with crops only, no flips (diagnosis)",
    )
)
# Fine-tuning a pretrained victim (--init-from; BAIT, ICLR 2026): the cpu recipe at a tenth of its learning rate, so
# that the first steps refine the pretrained features instead of overwriting them. Layers to keep as they are: --freeze.
_add(
    Recipe(
        "finetune",
        10,
        128,
        0.01,
        schedule="cosine",
        augment="none",
        description="fine-tuning from --init-from weights: the cpu recipe at lr 0.01 (10 epochs, batch 128, cosine, no "
        "augmentation); --freeze keeps early layers as loaded",
    )
)
