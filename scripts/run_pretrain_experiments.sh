#!/usr/bin/env bash
# Pretraining variants side by side: each line of the list is "<name> <pretrain_vae arguments>".
# Every run trains for the same number of steps (not the same wall time, so that runs sharing a
# machine stay comparable), then its final checkpoint (no selection on the validation split) is
# scored on DAVIS dev/val with the paper's crop and with a perturbed crop. Then:
#   python scripts/summarize_pretrain.py runs/pexp
# Environment: PARALLEL (runs at a time, default 1), STEPS (default 1600 = 4 LR cycles),
# DAVIS (the DAVIS 2016 folder; default: CI's data folder beside the repository), PY (default .venv/bin/python), EXP_DIR (default runs/pexp),
# EXTRA (arguments added to every run, e.g. "--device cuda"), OVERWRITE (set to 1 to replace the runs and
# reports of an earlier invocation; without it a run whose folder already holds one is refused, rc=2).
# W&B (offline unless WANDB_MODE says otherwise; runs in $WANDB_DIR, default runs/wandb): a run's
# pretraining and its two evaluations are in the group "<experiment>/<variant>" (experiment:
# $EXP_DIR's name; variant: <name> without its -s<seed>). Upload: wandb sync runs/wandb/offline-run-*
#   bash scripts/run_pretrain_experiments.sh [configs/experiments/pretrain_davis.txt]
set -uo pipefail
cd "$(dirname "$0")/.."
export PY=${PY:-.venv/bin/python} STEPS=${STEPS:-1600} DAVIS=${DAVIS:-data/davis2016}
export EXP_DIR=${EXP_DIR:-runs/pexp} EXTRA=${EXTRA:-} OVERWRITE=${OVERWRITE:-}
list=${1:-configs/experiments/pretrain_davis.txt}
mkdir -p "$EXP_DIR"
run_one() {
  name=$1; shift
  dir="$EXP_DIR/$name"
  # <experiment>/<variant>: the seeds of a variant together; the evaluations read it from the environment
  export WANDB_RUN_GROUP="$(basename "$EXP_DIR")/${name%-s[0-9]*}"
  echo "=== $(date '+%F %T') ===" >> "$dir.log"  # appended: a refused re-run never erases a run's log
  # shellcheck disable=SC2086
  $PY -m bmvtrack.pretrain_vae --quiet --out "$dir" --max-steps "$STEPS" --time-budget 0 \
    --set epochs=100000 --set data.root="$DAVIS" --set threads=1 ${OVERWRITE:+--overwrite} "$@" $EXTRA >> "$dir.log" 2>&1
  rc=$?
  for crop in gt perturbed; do
    # shellcheck disable=SC2086
    $PY -m bmvtrack.evaluate_vae --checkpoint "$dir/checkpoint.pt" --data "$DAVIS" --resolution 240p \
      --split dev/val --crop $crop --threads 1 --out "$dir/eval" --quiet ${OVERWRITE:+--overwrite} $EXTRA \
      >> "$dir.log" 2>&1
  done
  echo "$name train rc=$rc"
}
export -f run_one
grep -v '^\s*\(#\|$\)' "$list" | xargs -P "${PARALLEL:-1}" -L 1 bash -c 'run_one "$@"' _
