#!/usr/bin/env bash
# The motion agent on the DAVIS 2016 3-fold cross-validation (configs/folds/davis2016_3fold.yaml): for each
# fold K, variant and seed, an agent trained on the other two folds with fold K's motion posterior
# ($MOTION_DIR/motion-fK/checkpoint.pt, from scripts/run_motion_folds.sh: it never saw fold K either), then
# scored on fold K's ten sequences beside the same agent untrained and the hand rules on the same state.
# Two runs at a time, one thread each. Then: python scripts/summarize_agents.py $EXP_DIR
# Environment: STEPS (default 6000), SEEDS (default "0 1 2"), VARIANTS (default "rl rl-expert supervised"),
# FOLDS (default "0 1 2"), DAVIS (default data/davis2016), MOTION_DIR (default runs/folds),
# EXP_DIR (default runs/agent_folds), JOBS (default 2), EXTRA (more arguments for every run, e.g. "--set gamma=0.95").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python} STEPS=${STEPS:-6000} SEEDS=${SEEDS:-"0 1 2"} VARIANTS=${VARIANTS:-"rl rl-expert supervised"}
FOLDS=${FOLDS:-"0 1 2"} DAVIS=${DAVIS:-data/davis2016} MOTION_DIR=${MOTION_DIR:-runs/folds}
EXP_DIR=${EXP_DIR:-runs/agent_folds} JOBS=${JOBS:-2} EXTRA=${EXTRA:-}
FOLD_FILE=configs/folds/davis2016_3fold.yaml
export OMP_NUM_THREADS=1 PY STEPS DAVIS MOTION_DIR EXP_DIR FOLD_FILE EXTRA
mkdir -p "$EXP_DIR"
run_one() {
  local k=$1 variant=$2 seed=$3 out="$EXP_DIR/f$1-$2-s$3"
  [ -f "$out/eval-perturbed/overall.csv" ] && return 0  # finished earlier: kept
  # shellcheck disable=SC2086
  $PY -m bmvtrack.train_motion_agent --data "$DAVIS" --layout davis2016 --resolution 240p \
    --split "$FOLD_FILE:$k:train" --eval-split "$FOLD_FILE:$k:test" --motion-net "$MOTION_DIR/motion-f$k/checkpoint.pt" \
    --variant "$variant" --seed "$seed" --steps "$STEPS" --out "$out" --overwrite --quiet --no-wandb $EXTRA > "$out.log" 2>&1
  echo "$(date '+%T') fold $k $variant seed $seed done"
}
export -f run_one
for k in $FOLDS; do for s in $SEEDS; do for v in $VARIANTS; do echo "$k $v $s"; done; done; done \
  | xargs -P "$JOBS" -L 1 bash -c 'run_one "$@"' _
