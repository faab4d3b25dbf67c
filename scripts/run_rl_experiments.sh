#!/usr/bin/env bash
# RL comparisons (MV-SAC vs SAC × 3 seeds, and single-seed ablations): each line of the
# list is "<name> <train_sac arguments>"; two runs at a time, 6 minutes each, one torch thread each,
# into $EXP_DIR (default runs/exp). Then: python scripts/summarize_rl.py runs/exp
# W&B (offline unless WANDB_MODE says otherwise; runs in $WANDB_DIR, default runs/wandb): every run
# is in the group "<experiment>/<variant>" (experiment: $EXP_DIR's name; variant: <name> without its
# -s<seed>), so a dashboard pools the seeds of a variant. Upload: wandb sync runs/wandb/offline-run-*
#   bash scripts/run_rl_experiments.sh [configs/experiments/rl_synth.txt]          # synthetic default
#   EXP_DIR=runs/exp_davis bash scripts/run_rl_experiments.sh configs/experiments/rl_davis_synth.txt
set -uo pipefail
cd "$(dirname "$0")/.."
list=${1:-configs/experiments/rl_synth.txt}
export EXP_DIR=${EXP_DIR:-runs/exp}
mkdir -p "$EXP_DIR"
run_one() {
  name=$1; shift
  group="$(basename "$EXP_DIR")/${name%-s[0-9]*}"  # <experiment>/<variant>: the seeds of a variant together
  .venv/bin/python -m bmvtrack.train_sac --timesteps 20000 --time-budget 6 --out "$EXP_DIR/$name" \
    --set threads=1 --set eval_every=4000 --set checkpoint_every=4000 --set "wandb.group=$group" "$@" \
    > "$EXP_DIR/$name.log" 2>&1
  echo "$name rc=$?"
}
export -f run_one
grep -v '^\s*\(#\|$\)' "$list" | xargs -P 2 -L 1 bash -c 'run_one "$@"' _
