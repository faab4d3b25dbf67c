#!/usr/bin/env bash
# Segmentation networks on the DAVIS 2016 3-fold cross-validation: each line of the list is
# "<name> <pretrain_vae arguments>" (on top of configs/pretrain_davis.yaml), or "<name> --probe
# <arguments>" for scripts/unet_reference_probe.py (the textbook U-Net, or the βMVUnet trained by its
# recipe). For every fold K and seed, the network trains on K:train for $STEPS steps and its final
# checkpoint is scored on K:test (evaluate_vae's code, the annotation's crop). Then:
#   python scripts/summarize_segmentation.py $EXP_DIR --ref unetref
# Environment: STEPS (default 600, a multiple of the config's 300-step cycle), SEEDS (default "0"),
# FOLDS (default "0 1 2"), PARALLEL (runs at a time, default 2), DAVIS (default data/davis2016),
# PY (default .venv/bin/python), EXP_DIR (default runs/seg_folds), NAMES (only the list's lines of
# these names, e.g. "paper unetref"; default every line).
# A run whose folder exists is skipped, so an interrupted invocation picks up where it stopped.
#   bash scripts/run_segmentation_folds.sh [configs/experiments/segmentation_folds.txt]
set -uo pipefail
cd "$(dirname "$0")/.."
export PY=${PY:-.venv/bin/python} STEPS=${STEPS:-600} DAVIS=${DAVIS:-data/davis2016} EXP_DIR=${EXP_DIR:-runs/seg_folds}
export OMP_NUM_THREADS=1 FOLD_FILE=configs/folds/davis2016_3fold.yaml
list=${1:-configs/experiments/segmentation_folds.txt}
mkdir -p "$EXP_DIR"
run_one() {  # name fold seed [pretrain_vae arguments]
  name=$1 k=$2 seed=$3; shift 3
  dir="$EXP_DIR/$name-f$k$([ "$seed" = 0 ] || echo "-s$seed")"
  [ -e "$dir" ] && { echo "$dir exists: skipped"; return 0; }
  if [ "${1:-}" = --probe ]; then
    shift
    $PY scripts/unet_reference_probe.py --steps "$STEPS" --threads 1 --seed "$seed" --data "$DAVIS" \
      --train-split "$FOLD_FILE:$k:train" --val-split "$FOLD_FILE:$k:test" --out "$dir" "$@" > "$dir.log" 2>&1
  else
    $PY -m bmvtrack.pretrain_vae --config configs/pretrain_davis.yaml --out "$dir" --no-wandb --quiet \
      --max-steps "$STEPS" --time-budget 0 --set epochs=100000 --set threads=1 --set seed="$seed" \
      --set data.root="$DAVIS" --set data.split="$FOLD_FILE:$k:train" --set val_split="$FOLD_FILE:$k:test" \
      --set prior="$dir/prior.json" "$@" > "$dir.log" 2>&1 &&
    $PY -m bmvtrack.evaluate_vae --checkpoint "$dir/checkpoint.pt" --data "$DAVIS" --layout davis2016 \
      --resolution 240p --split "$FOLD_FILE:$k:test" --crop gt --threads 1 --out "$dir/eval" --no-wandb --quiet >> "$dir.log" 2>&1
  fi
  echo "$(date '+%T') $dir rc=$?"
}
export -f run_one
{
  for seed in ${SEEDS:-0}; do
    for k in ${FOLDS:-0 1 2}; do
      grep -v '^\s*\(#\|$\)' "$list" | while read -r name args; do
        [ -z "${NAMES:-}" ] || [[ " $NAMES " == *" $name "* ]] || continue
        echo "$name $k $seed $args"
      done
    done
  done
} | xargs -P "${PARALLEL:-2}" -L 1 bash -c 'run_one "$@"' _
