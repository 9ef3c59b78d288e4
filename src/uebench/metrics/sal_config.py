"""How SAL is measured: one frozen settings object, validated once where it is made (a preset, the command line, a
bench.json read back), then carried unchanged to the estimator (`measure`).

    sal = SALConfig(mode="fast", every=2, rounds=3, subset=256)
    probe = SALProbe(sal, augment="crop_flip")   # per-epoch, in a training run (augment: the recipe's)
    result = sal.measure(model, probe_data, running_loss=0.81, seed=0)

`rounds` None means the mode's own default: 10 in faithful mode (the public code), the fast config's 5 in fast mode.
`subset`, `augment`, `crossfit`, `anchor`, `step_rule` and `rescore` only matter in fast mode
(uebench.metrics.fast_sal).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

from ..core.errors import UserError
from ..core.io import recorded
from ..core.options import MAX_EPOCHS, MAX_IMAGES, MAX_ROUNDS, check_count
from .fast_sal import AUGMENT, BEFORE_OPTION, STEP_RULES, FastSALConfig
from .sal import DEFAULT_EPS, DEFAULT_LR, DEFAULT_MODE, MODES, ORIGINS, model_sal

# settings added after benches existed, with the values records written before them measured with: absent from a
# bench's identity and run keys while they hold those values, and read back as them where absent
ADDED_LATER = BEFORE_OPTION


@dataclass(frozen=True)
class SALConfig:
    mode: str = DEFAULT_MODE  # fast | faithful (the paper's procedure); model_sal's default too
    every: int = 1  # probe every K epochs
    # running (the public code's L0) | eval; a probe always has its epoch's running loss, so this is model_sal's rule
    # (running where a running loss is given, else eval) as a probe meets it
    origin: str = "running"
    eps: float = DEFAULT_EPS
    rounds: int | None = None  # None: 10 (faithful) or 5 (fast)
    lr: float = DEFAULT_LR
    subset: int = 1024  # fast mode: probe images
    augment: str = "recipe"  # fast mode: recipe (as the run trained) | none | once (crop+flip always: 0.1.0's)
    crossfit: bool = False  # fast mode: score each half of the subset's search on the other half
    anchor: bool = True  # fast mode: level the subset's losses at W0's loss over the whole training set
    step_rule: str = "sgd"  # fast mode: sgd (minibatch SGD passes, as faithful) | full (one full-batch step a round)
    rescore: bool = False  # fast mode: score the search's extremes and W0 on the whole training set, not the subset

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(f"unknown SAL mode '{self.mode}'; valid: {', '.join(MODES)}")
        if self.origin not in ORIGINS:
            raise UserError(f"unknown SAL origin '{self.origin}'; valid: {', '.join(ORIGINS)}")
        if self.step_rule not in STEP_RULES:
            raise UserError(f"unknown fast-SAL step rule '{self.step_rule}'; valid: {', '.join(STEP_RULES)}")
        if self.augment not in AUGMENT:
            raise UserError(f"unknown fast-SAL augment '{self.augment}'; valid: {', '.join(AUGMENT)}")
        if not _whole(self.every, 1):
            raise UserError(f"--sal-every must be >= 1, got {self.every}")
        check_count(self.every, "--sal-every", MAX_EPOCHS)
        if not _whole(self.subset, 1):
            raise UserError(f"SAL subset must be >= 1, got {self.subset}")
        check_count(self.subset, "SAL subset", MAX_IMAGES)
        if not (_finite_positive(self.eps) and _finite_positive(self.lr)) or (
            self.rounds is not None and not _whole(self.rounds, 1)
        ):
            raise UserError(f"SAL needs eps > 0, rounds >= 1, lr > 0 (got {self.eps}, {self.rounds}, {self.lr})")
        if self.rounds is not None:
            check_count(self.rounds, "SAL rounds", MAX_ROUNDS)

    def check_schedule(self, epochs: int) -> None:
        """Refuse (before any work) a schedule whose epochs hold no SAL epoch: #LP and UD would have nothing to
        count. SAL is probed at epochs every, 2 * every, ... <= epochs."""
        if self.every > epochs:
            raise UserError(
                f"SAL is probed every {self.every} epochs but the run trains {epochs}: no epoch would be probed, so no "
                f"#LP or UD; give --sal-every {epochs} or less, or more epochs"
            )

    @property
    def fast(self) -> FastSALConfig:
        """The fast estimator's options (its other knobs keep their defaults)."""
        return FastSALConfig(
            subset=self.subset,
            augment=self.augment,
            crossfit=self.crossfit,
            anchor=self.anchor,
            step_rule=self.step_rule,
            rescore=self.rescore,
        )

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "SALConfig":
        """The settings a record holds; a setting it lacks was added later and had its unset value then (not
        today's default: a bench recorded before `step_rule` existed ran the full-batch rule)."""
        return cls(**{**ADDED_LATER, **record})

    def record(self) -> dict[str, Any]:
        """The settings as a bench's identity and run keys hold them (a setting added later is absent while unset)."""
        return recorded(dataclasses.asdict(self), ADDED_LATER)

    def measure(
        self,
        model,
        data,
        *,
        seed: int,
        layers: Sequence[str] | None = None,
        running_loss: float | None = None,
        origin: str | None = None,
        batch_size: int = 256,
        device=None,
        **estimator: Any,
    ):
        """SAL of `model` on `data` under these settings (uebench.metrics.model_sal); `origin` overrides this
        config's for one call (the eval-loss fall-back after a mixed-label epoch)."""
        return model_sal(
            model,
            data,
            layers=layers,
            eps=self.eps,
            rounds=self.rounds,
            lr=self.lr,
            origin=self.origin if origin is None else origin,
            running_loss=running_loss,
            mode=self.mode,
            seed=seed,
            batch_size=batch_size,
            fast=self.fast,
            device=device,
            **estimator,
        )


def _whole(v: Any, minimum: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _finite_positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
