#!/usr/bin/env bash
# Attack efficacy on the real CIFAR-10 subset (../shared/data): craft each attack with its `fast` preset, train a
# width-0.125 ResNet-18 on the poison with the `quick` recipe, record final and peak test accuracy; with SAL=1 also
# fast SAL every 3 epochs and the UD table (it triples the cost on a CPU).
# Resumable: finished poisons and runs are kept.  Usage: [SAL=1] [ATTACKS="em ops"] bash benchmarks/efficacy_cifar.sh [OUT] [EPOCHS]
set -euo pipefail
OUT=${1:-runs/efficacy-cifar}
EPOCHS=${2:-10}
DATA=(--dataset cifar10 --data-dir ../shared/data)
TRAIN=(--model resnet18 --width ${WIDTH:-0.125} --recipe quick --epochs "$EPOCHS" --quiet)
if [ "${SAL:-0}" = 1 ]; then TRAIN+=(--sal --sal-mode fast --sal-every 3); fi
UE=${UE:-.venv/bin/uebench}
mkdir -p "$OUT"
run() {  # run NAME [train args...]: train, or resume an unfinished run, or skip a finished one
  local name=$1; shift
  if [ -f "$OUT/$name/summary.json" ]; then return; fi
  local mode=(); [ -f "$OUT/$name/checkpoint.pt" ] && mode=(--resume)
  local t0=$SECONDS
  "$UE" train "${DATA[@]}" "${TRAIN[@]}" "$@" --out "$OUT/$name" "${mode[@]}"
  echo "$name train_s=$((SECONDS - t0))" >> "$OUT/times.txt"
}
run clean
for attack in ${ATTACKS:-lsp ops ar em rem tap dc}; do
  if [ ! -f "$OUT/$attack.safetensors" ]; then
    t0=$SECONDS
    "$UE" craft "${DATA[@]}" --attack "$attack" --preset fast --quiet --out "$OUT/$attack.safetensors"
    echo "$attack craft_s=$((SECONDS - t0))" >> "$OUT/times.txt"
  fi
  run "$attack" --poison "$OUT/$attack.safetensors"
done
if [ "${SAL:-0}" = 1 ]; then
  "$UE" ud --clean "$OUT/clean" --poisoned $(for a in ${ATTACKS:-lsp ops ar em rem tap dc}; do echo "$OUT/$a"; done) --out "$OUT/ud"
fi
