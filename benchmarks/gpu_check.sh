#!/usr/bin/env bash
# The GPU check, on a fresh GPU machine that has Python and this repository: installs the pinned torch (its CUDA
# build, which is what PyPI serves for Linux) and uebench into .venv-gpu, then prints benchmarks/gpu_check.py's table.
# At most about 10 minutes on an H100-class GPU. Exits non-zero with one line where there is no GPU.
#   bash benchmarks/gpu_check.sh            # on the GPU machine
#   bash benchmarks/gpu_check.sh --device cpu   # the same code at a tiny size, to check the script anywhere
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_venv.sh
if [[ " $* " == *" --device cpu "* ]]; then gpu_venv gpu_check allow-cpu; else gpu_venv gpu_check; fi
exec timeout 900 .venv-gpu/bin/python benchmarks/gpu_check.py "$@"
