"""What PSNR and SSIM of a poison cost (uebench.poisons.imperceptibility), against scikit-image's loop over images:

    python benchmarks/imperceptibility_cost.py --data-dir ../shared/data [--threads 1]

Measures, on the CIFAR-10 training split found there (the shared subset: 5,085 images of 32x32), a perturbation of
uniform grey levels in [-8, 8]: uebench's vectorised PSNR + SSIM, and skimage's structural_similarity and
peak_signal_noise_ratio called per image with the same settings (channel_axis, data_range=255). Prints both times,
their ratio and the largest difference per image (the two must agree to 1e-9).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from uebench.data import load
    from uebench.poisons.imperceptibility import imperceptibility, psnr, ssim

    ds = load("cifar10", args.data_dir, "train")
    g = torch.Generator().manual_seed(0)
    x = ds.images
    y = (x.int() + torch.randint(-8, 9, x.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    imperceptibility(y[:64], x[:64], ds.indices[:64])  # warm-up
    t0 = time.perf_counter()
    stats = imperceptibility(y, x, ds.indices)
    ours = time.perf_counter() - t0
    xs, ys = x.permute(0, 2, 3, 1).numpy(), y.permute(0, 2, 3, 1).numpy()
    t0 = time.perf_counter()
    sk_s = np.array([structural_similarity(a, b, channel_axis=-1, data_range=255) for a, b in zip(xs, ys)])
    sk_p = np.array([peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(xs, ys)])
    theirs = time.perf_counter() - t0
    our_s = torch.cat([ssim(y[i : i + 512], x[i : i + 512]) for i in range(0, len(x), 512)]).numpy()
    our_p = psnr(y, x).numpy()
    print(
        json.dumps(
            {
                "images": len(x),
                "shape": list(x.shape[1:]),
                "threads": args.threads,
                "uebench_seconds": round(ours, 3),
                "skimage_loop_seconds": round(theirs, 3),
                "speedup": round(theirs / ours, 2),
                "max_abs_diff_ssim": float(np.abs(sk_s - our_s).max()),
                "max_abs_diff_psnr": float(np.abs(sk_p - our_p).max()),
                "stats": {k: v for k, v in stats.items() if k != "settings"},
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
