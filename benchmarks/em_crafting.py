"""EM crafting throughput: uebench's noise update against a plain reference PGD loop, same model, same data.

The unit is image-steps per second: one signed-gradient step on one image's noise (a forward and an input
backward through the frozen crafting model). The reference is written the way public EM code does it: fp32
NCHW tensors, a DataLoader over per-sample tensors (batch 512), a Python loop gathering each sample's noise
into the batch and scattering it back, and a fresh leaf tensor per step. uebench's version keeps the data as
one channels_last tensor on the device, runs the frozen model with BatchNorm folded into the convolutions, and
updates a whole batch's noise with tensor ops.

    python benchmarks/em_crafting.py [--n 1024] [--width 0.25] [--steps 5] [--repeats 3] [--threads 1]

Both run in this process, interleaved, and the best of `repeats` timings of each is kept (the machine may be
shared). Prints both throughputs and their ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from uebench.attacks import ATTACKS, make_config
from uebench.attacks import _crafting as C
from uebench.data import load
from uebench.models import create_model

EPS, STEP = 8 / 255, 0.8 / 255
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def dataset(n: int):
    if (SHARED / "cifar-10-batches-py").is_dir():
        ds = load("cifar10", SHARED, "train")
    else:  # a user's clone: the generated dataset, same shape
        ds = load("scenes", None, "train", n_train=n, n_test=10)
    return ds.subset(torch.arange(n))


def reference_round(model, loader, noise, steps):
    """One EM noise pass as public code writes it (per-sample gather/scatter, NCHW, fresh leaves)."""
    idx = 0
    for images, labels in loader:
        batch_noise, start = [], idx
        for _ in range(len(images)):
            batch_noise.append(noise[idx])
            idx += 1
        batch_noise = torch.stack(batch_noise)
        perturbed = torch.clamp(images + batch_noise, 0, 1).requires_grad_(True)
        eta = batch_noise
        for _ in range(steps):
            loss = F.cross_entropy(model(perturbed), labels)
            loss.backward()
            stepped = perturbed.detach() - STEP * perturbed.grad.sign()
            eta = torch.clamp(stepped - images, -EPS, EPS)
            perturbed = torch.clamp(images + eta, 0, 1).requires_grad_(True)
        for i in range(len(eta)):
            noise[start + i] = eta[i].detach()
    return noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1024, help="images")
    p.add_argument("--width", type=float, default=0.25, help="ResNet-18 width")
    p.add_argument("--steps", type=int, default=5, help="PGD steps per image per timed pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pgd-batch", type=int, default=256, help="uebench's PGD batch")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    ds = dataset(args.n)
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=ds.num_classes, width=args.width).eval()
    for q in model.parameters():  # the public code freezes the model during the noise pass too
        q.requires_grad_(False)

    # reference: NCHW fp32, per-sample tensors behind a DataLoader
    x_nchw = ds.images.float() / 255
    loader = DataLoader(TensorDataset(x_nchw, ds.labels), batch_size=512, shuffle=False)
    ref_noise = torch.zeros_like(x_nchw)

    # uebench: the EM attack's own noise pass on channels_last tensors
    cls = ATTACKS.get("em")
    attack = cls(make_config(cls, "paper", steps=args.steps, pgd_batch=args.pgd_batch))
    fast_model = C.eval_copy(model)  # what EM runs its noise pass on: frozen, BatchNorm folded, channels_last
    x, y = C.tensors(ds, torch.device("cpu"))
    noise = C.channels_last(torch.zeros_like(x))
    compute = C.Compute(len(x))

    ref_best = ours_best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ref_noise = reference_round(model, loader, ref_noise, args.steps)
        ref_best = min(ref_best, time.perf_counter() - t0)

        t0 = time.perf_counter()
        noise = attack._samplewise_round(fast_model, x, y, noise, compute)
        ours_best = min(ours_best, time.perf_counter() - t0)

    work = args.n * args.steps
    ref_rate, ours_rate = work / ref_best, work / ours_best
    print(
        f"EM noise pass: {args.n} images x {args.steps} steps, "
        f"resnet18 width {args.width}, {args.threads} thread(s), best of {args.repeats}"
    )
    print(f"  reference (DataLoader, NCHW, per-sample loop, batch 512): {ref_rate:8.1f} image-steps/s")
    print(f"  uebench   (tensor-resident, channels_last, batch {args.pgd_batch}):   {ours_rate:8.1f} image-steps/s")
    print(f"  ratio uebench / reference: {ours_rate / ref_rate:.2f}x")


if __name__ == "__main__":
    main()
