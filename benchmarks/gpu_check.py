"""What the `paper` preset costs on this GPU: one table, in at most about 10 minutes on an H100-class device.

    python benchmarks/gpu_check.py                  # cuda (exits 2 with one line where there is none)
    python benchmarks/gpu_check.py --device cpu     # the same code at a tiny size: checks the script, not a GPU

Measured, on CIFAR-shaped data resident on the device (random uint8 images: throughput does not depend on pixels):
- training throughput of ResNet-18 at width 1 with the paper recipe (batch 256, crop+flip, the run's precision),
  images/s and seconds per epoch of 50,000 images;
- faithful and fast SAL seconds per probed epoch (21 layers), faithful on `--sal-images` images and scaled to 50,000
  (its cost is linear in the images it passes over), fast at its default 1,024-image subset, and their ratio;
- EM crafting throughput in image-steps/s (one bi-level round on `--em-images` images);
- peak device memory;
- the projected wall time of the `paper` preset (8 runs of 50 epochs, SAL every epoch) with faithful and with fast
  SAL, EM's crafting included, the other attacks' left out (their cost is attack-specific).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import torch

from uebench.core.runtime import autocast_factory, grad_scaler, resolve_precision
from uebench.data.base import ImageDataset
from uebench.metrics import SALConfig
from uebench.metrics.sal import ProbeData
from uebench.models import create_model
from uebench.training.fit import epoch_generator
from uebench.training.recipes import RECIPES
from uebench.training.trainer import make_optimizer

FULL = 50_000  # CIFAR-10's training split
RUNS, EPOCHS = 8, 50  # the paper preset: clean + seven attacks, 50 epochs, SAL every epoch


def synthetic(n: int, size: int, device: torch.device) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    ds = ImageDataset("synthetic", "train", images, labels, [str(i) for i in range(10)])
    return ds.with_images(ds.images.to(device)) if device.type == "cuda" else ds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--train-images", type=int, default=None, help="default 10,240 on cuda, 512 on cpu")
    ap.add_argument("--sal-images", type=int, default=None, help="faithful SAL images (default 5,120; cpu 64)")
    ap.add_argument("--fast-subset", type=int, default=None, help="fast SAL images (default 1,024; cpu 256)")
    ap.add_argument("--em-images", type=int, default=None, help="EM crafting images (default 5,120; cpu 256)")
    ap.add_argument("--width", type=float, default=None, help="ResNet-18 width (default 1; cpu 0.125)")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device here (torch sees none); run it on a GPU machine, or --device cpu",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    tiny = device.type == "cpu"
    n_train = args.train_images or (512 if tiny else 10_240)
    n_sal = args.sal_images or (64 if tiny else 5_120)
    n_em = args.em_images or (256 if tiny else 5_120)
    width = args.width or (0.125 if tiny else 1.0)
    precision = resolve_precision("auto", device)
    autocast = autocast_factory(device, precision)
    recipe = RECIPES.get("paper")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # training throughput: two epochs, the second timed (the first pays for cuDNN's autotuning)
    ds = synthetic(n_train, 32, device)
    model = create_model("resnet18", width=width).to(device).to(memory_format=torch.channels_last)
    opt = make_optimizer(model, recipe)
    scaler = grad_scaler(precision, device)

    def epoch(e: int) -> None:
        from uebench.training.fit import train_epoch
        from uebench.training.trainer import ClassificationStep

        step = ClassificationStep(ds, recipe.augment, device, autocast, True)
        train_epoch(model, opt, step, len(ds), recipe.batch_size, epoch_generator(0, e), scaler=scaler)

    epoch(0)
    t_train = timed(lambda: epoch(1), device)
    ips = n_train / t_train
    epoch_s = FULL / ips

    # SAL per probed epoch: faithful over n_sal images (scaled to the full split), fast at its defaults
    model.eval()
    n_fast = args.fast_subset or (256 if tiny else 1024)
    sal_ds = synthetic(max(n_sal, n_fast), 32, torch.device("cpu"))
    probe = ProbeData.from_dataset(sal_ds.subset(torch.arange(n_sal)), device, augment=True, batch_size=256)
    faithful = SALConfig(mode="faithful", rounds=10)
    t_faithful = timed(lambda: faithful.measure(model, probe, seed=0, running_loss=1.0, device=device), device)
    faithful_full = t_faithful * FULL / n_sal
    fast_probe = ProbeData.from_dataset(sal_ds, device, augment=True, batch_size=256)
    fast = SALConfig(mode="fast", subset=n_fast)
    t_fast = timed(lambda: fast.measure(model, fast_probe, seed=0, running_loss=1.0, device=device), device)

    # EM: one bi-level round (train steps + noise steps), image-steps/s over its own step count
    from uebench.attacks import craft

    em_ds = synthetic(n_em, 32, torch.device("cpu"))
    params = {"max_rounds": 1, "device": str(device), "width": width}
    t_em = timed(lambda: craft("em", em_ds, preset="paper", seed=0, progress=False, **params), device)
    from uebench.attacks import ATTACKS, make_config

    em_cfg = make_config(ATTACKS.get("em"), "paper", **params)
    em_image_steps = n_em * em_cfg.steps + em_cfg.train_steps * em_cfg.batch_size  # noise steps + model steps
    em_rate = em_image_steps / t_em
    em_full = t_em * FULL / n_em * 10  # the paper's EM stops after about 10 rounds on CIFAR-10

    # ImageNet-100 (the imagenet100 preset): torchvision's ResNet-18 at 224 px with APBench's recipe (flip + jitter)
    in_n = 16 if tiny else 1024
    in_recipe = RECIPES.get("apbench-imagenet")
    in_ds = synthetic(in_n, 224, device)
    in_model = create_model("resnet18_imagenet", num_classes=10, image_size=224, width=width)
    in_model = in_model.to(device).to(memory_format=torch.channels_last)
    in_opt = make_optimizer(in_model, in_recipe)

    def in_epoch(e: int) -> None:
        from uebench.training.fit import train_epoch
        from uebench.training.trainer import ClassificationStep

        step = ClassificationStep(in_ds, in_recipe.augment, device, autocast, True)
        batch = min(in_recipe.batch_size, in_n)
        train_epoch(in_model, in_opt, step, in_n, batch, epoch_generator(0, e), scaler=scaler)

    in_epoch(0)
    in_ips = in_n / timed(lambda: in_epoch(1), device)
    # 26,000 images (20% of ImageNet-100) x 200 epochs x 4 runs (clean, EM, REM, LSP), SAL and crafting left out
    in_hours = 26_000 * in_recipe.epochs * 4 / in_ips / 3600

    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    train_all = RUNS * EPOCHS * epoch_s
    rows = [
        ("device", torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (tiny: checks the script)"),
        ("precision", precision),
        ("ResNet-18 width", f"{width:g}"),
        ("training images/s", f"{ips:,.0f}"),
        ("training s per 50k-image epoch", f"{epoch_s:,.1f}"),
        ("faithful SAL s per probed epoch (50k, scaled)", f"{faithful_full:,.1f}"),
        (f"fast SAL s per probed epoch ({n_fast:,} images)", f"{t_fast:,.1f}"),
        ("faithful / fast SAL cost", f"{faithful_full / t_fast:,.1f}x"),
        ("EM crafting image-steps/s", f"{em_rate:,.0f}"),
        ("ImageNet-100 training images/s (224 px)", f"{in_ips:,.0f}"),
        ("imagenet100 preset, training only (h)", f"{in_hours:,.1f}"),
        ("peak device memory GiB", f"{peak:.2f}"),
        ("paper preset, faithful SAL (h)", f"{(train_all + RUNS * EPOCHS * faithful_full + em_full) / 3600:,.1f}"),
        ("paper preset, fast SAL (h)", f"{(train_all + RUNS * EPOCHS * t_fast + em_full) / 3600:,.1f}"),
    ]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
