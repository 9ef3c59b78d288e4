#!/usr/bin/env bash
# Does a model-free poison win the race against the images' content once it is stronger? Crafts each attack at
# 2x and 4x its budget (fast preset) on the real CIFAR-10 subset (../shared/data) and trains the efficacy victim
# on it (ResNet-18 width 0.125, recipe quick, 10 epochs: the quick regime of benchmarks/efficacy_study.py). Resumable.
# Usage: bash benchmarks/budget_sweep.sh [OUT]      (about 5 minutes per row on one core; compare with OUT/../clean)
set -euo pipefail
OUT=${1:-runs/budget-sweep}
UE=${UE:-.venv/bin/uebench}
DATA=(--dataset cifar10 --data-dir ../shared/data)
mkdir -p "$OUT"
row() {  # row NAME ATTACK KEY=VALUE...
  local name=$1 attack=$2; shift 2
  local sets=(); for kv in "$@"; do sets+=(--attack-option "$kv"); done
  [ -f "$OUT/$name.safetensors" ] || "$UE" craft "${DATA[@]}" --attack "$attack" --attack-preset fast "${sets[@]}" --quiet --out "$OUT/$name.safetensors"
  [ -f "$OUT/$name/summary.json" ] || "$UE" train "${DATA[@]}" --model resnet18 --width 0.125 --recipe quick --epochs 10 --quiet \
      --poison "$OUT/$name.safetensors" --out "$OUT/$name" --overwrite
}
row ar-x2 ar eps=2.0                       # the paper's L2 budget is 1.0
row ar-x4 ar eps=4.0
row lsp-x2 lsp eps=0.047058823529411764    # 12/255 per pixel; the paper's is 6/255
row lsp-x4 lsp eps=0.09411764705882353
