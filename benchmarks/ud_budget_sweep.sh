#!/usr/bin/env bash
# Does UD track a poison's strength? LSP and AR crafted at 0.5x, 1x, 2x and 4x their papers' budgets on the real
# CIFAR-10 subset (../shared/data), benched together in the `cpu` regime (one clean run, fast SAL, both origins).
# Then: benchmarks/sal_claims.py OUT prints Kendall tau of UD against accuracy and the shortcut probe over the 8 rows.
# Usage: bash benchmarks/ud_budget_sweep.sh [OUT]      (crafting: seconds; bench: about 2-3 minutes per row on one core)
set -euo pipefail
OUT=${1:-runs/ud-budget-sweep}
UE=${UE:-.venv/bin/uebench}
DATA=(--dataset cifar10 --data-dir ../shared/data)
mkdir -p "$OUT-poisons"
poisons=()
craft() {  # craft NAME ATTACK EPS
  local file="$OUT-poisons/$1.safetensors"
  [ -f "$file" ] || "$UE" craft "${DATA[@]}" --attack "$2" --attack-preset fast --attack-option "eps=$3" --quiet --out "$file"
  poisons+=(--poison "$file")
}
craft lsp-x0.5 lsp 0.011764705882352941   # 3/255 (the paper's L-inf budget is 6/255)
craft lsp-x1 lsp 0.023529411764705882
craft lsp-x2 lsp 0.047058823529411764
craft lsp-x4 lsp 0.09411764705882353
craft ar-x0.5 ar 0.5                       # the paper's L2 budget is 1.0
craft ar-x1 ar 1.0
craft ar-x2 ar 2.0
craft ar-x4 ar 4.0
"$UE" bench --preset cpu "${DATA[@]}" --attacks '' "${poisons[@]}" --out "$OUT" --quiet
