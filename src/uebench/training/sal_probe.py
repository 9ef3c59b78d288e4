"""SAL during training: a probe for `train(config, out, probes=[SALProbe(...)])`.

Every `every` epochs it stores in that epoch's record: "sal" {layer: SAL}, "sal_max" {layer: L_max} (the
ascending branch's highest loss), "sal_min" {layer: L_min} (the descending branch's lowest loss), "sal_l0"
(L0), "sal_mode", "sal_origin" and "sal_settings"; SAL = max(sal_max - sal_l0, sal_l0 - sal_min).

Two of the public code's choices around the search, followed by default and recorded when they apply:
- a per-batch defense its training loader applies (cutout) is applied to the probe data too (`defense_in_probe`);
  the settings name it as "probe_transform";
- after a mixup or cutmix epoch its running loss is 0 (those branches never add to it), so its L0 falls back to the
  eval-mode loss; `mixed_origin="eval"` does the same and records "sal_running_source": "eval", `"running"` keeps
  the mixed-label running loss.
The running loss is measured in the training precision (bf16 under autocast); the search and the eval origin
always run in fp32. With `keep_weights` the probed model is saved in the run folder (records.save_weights), so
`uebench sal-sweep` can measure SAL again later with other settings. In a run that shows progress, the probe shows
its layers under the training bar (`SAL epoch 4: layer 7/21 (layer2.0.conv2)`; plain lines in a log).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import UserError
from ..core.progress import Progress, progress_bar
from ..core.seeds import epoch_stream
from ..metrics.sal import ORIGINS, ProbeData
from ..metrics.sal_config import SALConfig
from .records import save_weights


@dataclass
class SALProbe:
    """Faithful: the whole training set, augmented afresh every pass (`augment`: as the recipe trained), a new
    random stream every epoch. Fast: a fixed subset of the training set (the same images every epoch; see
    fast_sal.py). L0 defaults to the epoch's running training loss (origin "running", as the public code).
    SAL always runs in fp32, whatever the trainer's autocast: it measures loss differences of ~1e-3.

    `config` (a SALConfig, validated where it was made) says how SAL is measured; the fields beside it say what this
    run's probe reads: which layers, which batch, whether the data is augmented as the model trained."""

    config: SALConfig = field(default_factory=lambda: SALConfig(mode="faithful"))
    layers: tuple[str, ...] | None = None
    batch_size: int | None = None  # None: the run's training batch, as the public code probes with its training loader
    # the training recipe's augmentation (uebench.data.augment.AUGMENTATIONS): the public code probes with its training
    # loader's transforms, and fast mode's fixed subset takes one draw of the same (none where the run has none)
    augment: str = "crop_flip"
    defense_in_probe: bool = True  # the public code's probe data carries its loader's per-batch defense (cutout)
    mixed_origin: str = "eval"  # after mixup/cutmix epochs: "eval" (the public code's fall-back) | "running"
    keep_weights: bool = False  # save the probed model in the run folder (weights/epoch-NNNN.safetensors)
    name: str = "sal"

    def __post_init__(self) -> None:
        if self.mixed_origin not in ORIGINS:
            raise UserError(
                f"unknown SAL origin '{self.mixed_origin}' for mixed-label epochs; valid: {', '.join(ORIGINS)}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"SAL batch size must be >= 1, got {self.batch_size}")
        if self.layers is not None:
            self.layers = tuple(self.layers)

    @property
    def every(self) -> int:
        return self.config.every

    @property
    def mode(self) -> str:
        return self.config.mode

    def due(self, epoch: int) -> bool:
        return epoch % self.every == 0

    def __call__(self, ctx) -> dict[str, Any]:
        if not self.due(ctx.epoch):
            return {}
        if self.keep_weights and ctx.run_dir is not None:
            save_weights(ctx.run_dir, ctx.epoch, ctx.model)
        batch = self.batch_size or ctx.batch_size
        transform = self.probe_transform(ctx.defense)
        data = ProbeData.from_dataset(
            ctx.train_set, ctx.device, augment=self.augment, batch_size=batch, transform=transform
        )
        # faithful: a fresh augmentation stream per epoch; fast: the same subset every epoch (seed only)
        seed = ctx.seed if self.mode == "fast" else epoch_stream(ctx.seed, ctx.epoch)
        mixed = bool(ctx.record.get("mixed_labels")) and self.mixed_origin == "eval"
        shown = LayersShown(f"SAL epoch {ctx.epoch}") if getattr(ctx, "progress", False) else None
        try:
            result = self.config.measure(
                ctx.model,
                data,
                layers=self.layers,
                origin="eval" if mixed else None,
                running_loss=None if mixed else ctx.record.get("train_loss"),
                seed=seed,
                batch_size=batch,
                device=ctx.device,
                progress=shown,
            )
        except BaseException:
            if shown is not None:
                shown.close(finished=False)
            raise
        if shown is not None:
            shown.close()
        record = result.to_record()
        if transform is not None:
            record["sal_settings"]["probe_transform"] = ctx.defense.name
        if mixed:  # the public code's L0 after a mixup/cutmix epoch: the eval loss stands in for the running one
            record.update(
                sal_origin=self.config.origin,
                sal_running=record["sal_eval"],
                sal_l0_running=record["sal_l0_eval"],
                sal_offset=0.0,
                sal_running_source="eval",
            )
        return record

    def probe_transform(self, defense):
        if defense is None or not (self.defense_in_probe and getattr(defense, "in_probe", False)):
            return None
        return lambda x, y, g: defense.batch(x, y, generator=g)[0]


class LayersShown:
    """The estimators' per-layer callback as a bar: `SAL epoch 4: layer 7/21 (layer2.0.conv2), elapsed 0:42`."""

    def __init__(self, desc: str):
        self.desc = desc
        self.bar: Progress | None = None

    def __call__(self, i: int, n: int, name: str) -> None:
        if self.bar is None:
            self.bar = progress_bar(True, n, self.desc, unit="layer", leave=False)
        if self.bar is not None:
            self.bar.set_item(i - 1, name)

    def close(self, finished: bool = True) -> None:
        if self.bar is not None:
            if finished and self.bar.total is not None:
                self.bar.set_item(self.bar.total, None)
            self.bar.close()
