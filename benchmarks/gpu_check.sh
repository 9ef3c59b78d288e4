#!/usr/bin/env bash
# The GPU check, on a fresh GPU machine that has Python and this repository: installs the pinned torch (its CUDA
# build, which is what PyPI serves for Linux) and uebench into .venv-gpu, then prints benchmarks/gpu_check.py's table.
# At most about 10 minutes on an H100-class GPU. Exits non-zero with one line where there is no GPU.
#   bash benchmarks/gpu_check.sh            # on the GPU machine
#   bash benchmarks/gpu_check.sh --device cpu   # the same code at a tiny size, to check the script anywhere
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ " $* " != *" --device cpu "* ]] && ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi not found); run it on a GPU machine, or pass --device cpu" >&2
  exit 2
fi
if [ ! -x .venv-gpu/bin/python ]; then
  python3 -m venv .venv-gpu
  .venv-gpu/bin/pip install -q "torch==2.13.0"
  .venv-gpu/bin/pip install -q -e .
fi
exec timeout 900 .venv-gpu/bin/python benchmarks/gpu_check.py "$@"
