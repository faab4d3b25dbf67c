#!/usr/bin/env bash
# The motion posterior trained on the boxes its own tracking reaches (DAgger's idea), on the DAVIS 2016
# 3-fold cross-validation. For each fold K:
#   1. the base network of the fold ($BASE_DIR/motion-fK) tracks the fold's TRAINING sequences with
#      `motion-posterior`, once as is and once re-initialised every 10 frames on a box perturbed by
#      0.3 × its size (the recovery it should learn), both written as evaluate runs
#      ($EXP_DIR/roll-fK, $EXP_DIR/roll-perturb-fK); the test sequences are never run;
#   2. a new network is trained by scripts/run_motion_folds.sh (NETS=motion) with
#      pairs.rollouts naming those runs: half of the real pairs then start from a box the tracker held.
# Then: python scripts/summarize_folds.py runs/folds --with "rollouts=$EXP_DIR"
# Environment: BASE_DIR (default runs/folds), EXP_DIR (default runs/motion_dagger), FOLDS (default
# "0 1 2"), JOBS (folds trained side by side, default 3; one thread each), STEPS, DAVIS, PY, EXTRA as
# in scripts/run_motion_folds.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python} DAVIS=${DAVIS:-data/davis2016} BASE_DIR=${BASE_DIR:-runs/folds}
EXP_DIR=${EXP_DIR:-runs/motion_dagger} FOLDS=${FOLDS:-"0 1 2"} JOBS=${JOBS:-3} EXTRA=${EXTRA:-}
FOLD_FILE=configs/folds/davis2016_3fold.yaml
export OMP_NUM_THREADS=1
mkdir -p "$EXP_DIR"
for k in $FOLDS; do
  base="$BASE_DIR/motion-f$k/checkpoint.pt"
  [[ -f "$base" ]] || { echo "$base: no base network for fold $k (run scripts/run_motion_folds.sh first)" >&2; exit 2; }
  roll=(--data "$DAVIS" --layout davis2016 --resolution 240p --split "$FOLD_FILE:$k:train" --trackers motion-posterior
        --motion-net "$base" --no-wandb --no-progress)
  [[ -f "$EXP_DIR/roll-f$k/manifest.json" ]] ||
    $PY -m bmvtrack.evaluate "${roll[@]}" --out "$EXP_DIR/roll-f$k" > "$EXP_DIR/roll-f$k.log" 2>&1
  [[ -f "$EXP_DIR/roll-perturb-f$k/manifest.json" ]] ||
    $PY -m bmvtrack.evaluate "${roll[@]}" --perturb-every 10 --perturb-shift 0.3 --perturb-seed "$k" \
      --out "$EXP_DIR/roll-perturb-f$k" > "$EXP_DIR/roll-perturb-f$k.log" 2>&1
done
running=0
for k in $FOLDS; do
  FOLDS=$k NETS=motion EXP_DIR="$EXP_DIR" PY="$PY" DAVIS="$DAVIS" \
    EXTRA="$EXTRA --set pairs.rollouts=[$EXP_DIR/roll-f$k,$EXP_DIR/roll-perturb-f$k]" \
    bash scripts/run_motion_folds.sh &
  running=$((running + 1))
  if (( running >= JOBS )); then wait -n; running=$((running - 1)); fi
done
wait
