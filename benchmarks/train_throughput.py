"""Training throughput: uebench's trainer against a plain reference loop, same model and data, one run.

The reference is written the way public unlearnable-example code trains: a Dataset of per-sample HWC uint8
arrays, per-sample pad+crop+flip in __getitem__, a DataLoader, fp32 NCHW. Prints images/s and the ratio.

    python benchmarks/train_throughput.py --widths 0.25 1.0

The two loops are timed alternately --repeats times and the best epoch of each is compared, so a burst of load
from other processes on a shared machine hits one timing, not the ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from uebench.core.runtime import autocast_factory, resolve_precision
from uebench.data import ImageDataset, load
from uebench.models import create_model
from uebench.training.fit import epoch_generator
from uebench.training.recipes import RECIPES
from uebench.training.trainer import classification_epoch, make_optimizer


class PerSampleDataset(torch.utils.data.Dataset):
    """What a torchvision-style pipeline does: one image at a time, ToTensor, RandomCrop(pad 4), flip."""

    def __init__(self, ds: ImageDataset):
        self.images = ds.images.permute(0, 2, 3, 1).numpy()  # HWC, as CIFAR's loaders keep them
        self.labels = ds.labels.tolist()
        self.rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1).float() / 255.0
        x = F.pad(x, (4, 4, 4, 4))
        dy, dx = self.rng.integers(0, 9, size=2)
        x = x[:, dy : dy + 32, dx : dx + 32]
        if self.rng.random() < 0.5:
            x = x.flip(2)
        return x, self.labels[i]


def reference_epoch(model, opt, ds: ImageDataset, batch_size: int, workers: int) -> None:
    loader = torch.utils.data.DataLoader(PerSampleDataset(ds), batch_size=batch_size, shuffle=True, num_workers=workers)
    model.train()
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def time_it(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=float, nargs="+", default=[0.25, 1.0])
    ap.add_argument("--images", type=int, default=2048, help="images per timed epoch (width 1.0 uses a quarter)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the reference")
    ap.add_argument("--repeats", type=int, default=3, help="alternating timed epochs of each loop; the best counts")
    args = ap.parse_args()

    full = load("scenes", split="train", n_train=args.images, n_test=8)
    recipe = RECIPES.get("paper").with_overrides(batch_size=args.batch_size)
    device = torch.device("cpu")
    precision = resolve_precision("auto", device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, uebench precision: {precision}")
    for width in args.widths:
        n = args.images if width < 0.5 else max(args.batch_size * 2, args.images // 4)
        ds = full.subset(torch.arange(n))
        warm = ds.subset(torch.arange(args.batch_size * 2))

        torch.manual_seed(0)
        ref = create_model("resnet18", width=width)
        ref_opt = make_optimizer(ref, recipe)
        reference_epoch(ref, ref_opt, warm, args.batch_size, args.workers)

        torch.manual_seed(0)
        ours = create_model("resnet18", width=width).to(memory_format=torch.channels_last)
        opt = make_optimizer(ours, recipe)
        autocast = autocast_factory(device, precision)
        run = lambda d, e: classification_epoch(ours, opt, d, recipe, epoch_generator(0, e), device, autocast, True)  # noqa: E731, B023
        run(warm, 0)
        t_ref, t_ours = float("inf"), float("inf")
        for r in range(args.repeats):
            t_ref = min(t_ref, time_it(lambda: reference_epoch(ref, ref_opt, ds, args.batch_size, args.workers)))  # noqa: B023
            t_ours = min(t_ours, time_it(lambda: run(ds, r + 1)))  # noqa: B023

        print(
            f"resnet18 width {width}: reference {n / t_ref:7.1f} img/s | uebench {n / t_ours:7.1f} img/s "
            f"| ratio {t_ref / t_ours:.2f}x  ({n} images, batch {args.batch_size}, best of {args.repeats})"
        )


if __name__ == "__main__":
    main()
