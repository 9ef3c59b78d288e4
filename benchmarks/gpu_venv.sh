# Sourced by the GPU scripts: refuse a machine without an NVIDIA GPU (unless the script's own CPU mode is asked for),
# then make .venv-gpu with the pinned torch (its CUDA build, what PyPI serves for Linux) and uebench.
#   source benchmarks/gpu_venv.sh NAME [allow-cpu]
gpu_venv() {
  local name=$1 allow_cpu=${2:-}
  if [ -z "$allow_cpu" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "$name: no NVIDIA GPU here (nvidia-smi not found); run it on a GPU machine" >&2
    exit 2
  fi
  if [ ! -x .venv-gpu/bin/python ]; then
    python3 -m venv .venv-gpu
    .venv-gpu/bin/pip install -q "torch==2.13.0"
    .venv-gpu/bin/pip install -q -e .
  fi
}
