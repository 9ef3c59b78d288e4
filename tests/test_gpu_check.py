"""benchmarks/gpu_check.py: refuses a machine without a GPU in one line, and its table is computed on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run")
def test_without_a_gpu_it_says_so_in_one_line():
    p = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "no CUDA device" in p.stderr and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_cpu_mode_prints_the_whole_table():
    args = [
        "--device",
        "cpu",
        "--train-images",
        "128",
        "--sal-images",
        "16",
        "--fast-subset",
        "32",
        "--em-images",
        "64",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    p = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=1200, env=env)
    assert p.returncode == 0, p.stderr
    for row in ("training images/s", "faithful / fast SAL cost", "EM crafting image-steps/s", "paper preset, fast SAL"):
        assert row in p.stdout
