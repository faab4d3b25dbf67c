#!/usr/bin/env bash
# The motion posterior on the DAVIS 2016 3-fold cross-validation (configs/folds/davis2016_3fold.yaml):
# for each fold K, models trained on the other two folds only, scored on fold K's ten sequences, so
# that all 30 sequences are held out once. Per fold:
#   1. the motion posterior (configs/pretrain_motion_davis.yaml) and the single-crop βMVUnet
#      (configs/pretrain_davis.yaml with the paper's loss, β = 5 and batch class weights, as on the
#      results pages; the segmentation trackers' network), the same number of steps,
#      side by side (one thread each); the final checkpoints are used (no selection on the fold);
#   2. evaluate: zero, csrt, segmentation, segmentation-adapt, motion-posterior, motion-posterior-mask;
#   3. evaluate_vae of both networks with the annotation's crop and in tracking mode.
# Then: python scripts/summarize_folds.py $EXP_DIR
# Environment: STEPS (default 800: two cycles of the cyclical learning rate, ending at its low point; the
# single-crop network runs the motion network's 400-step cycle here), DAVIS (default data/davis2016), PY (default .venv/bin/python),
# EXP_DIR (default runs/folds), FOLDS (default "0 1 2"), EXTRA (added to both pretraining runs),
# NETS (default "motion single"; "motion" trains and scores the motion posterior alone, e.g. to vary its β:
# NETS=motion EXTRA="--set model.beta=1" EXP_DIR=runs/beta1-folds).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python} STEPS=${STEPS:-800} DAVIS=${DAVIS:-data/davis2016}
EXP_DIR=${EXP_DIR:-runs/folds} FOLDS=${FOLDS:-"0 1 2"} EXTRA=${EXTRA:-} NETS=${NETS:-"motion single"}
FOLD_FILE=configs/folds/davis2016_3fold.yaml
export OMP_NUM_THREADS=1
mkdir -p "$EXP_DIR"
for k in $FOLDS; do
  train_split="$FOLD_FILE:$k:train" test_split="$FOLD_FILE:$k:test"
  motion="$EXP_DIR/motion-f$k" single="$EXP_DIR/mvunet-f$k"
  common=(--no-wandb --quiet --max-steps "$STEPS" --time-budget 0 --set epochs=100000 --set threads=1
          --set data.root="$DAVIS" --set data.split="$train_split" --set val_split="$test_split")
  # shellcheck disable=SC2086
  $PY -m bmvtrack.pretrain_vae --config configs/pretrain_motion_davis.yaml --out "$motion" "${common[@]}" \
    --set prior="$motion/relative_prior.json" $EXTRA > "$motion.log" 2>&1 &
  trackers=zero,motion-posterior,motion-posterior-mask segmenter=() nets=("$motion")
  if [[ " $NETS " == *" single "* ]]; then
    # shellcheck disable=SC2086
    $PY -m bmvtrack.pretrain_vae --config configs/pretrain_davis.yaml --out "$single" "${common[@]}" \
      --set prior="$single/prior.json" --set cycle_steps=400 --set model.beta=5 --set model.class_weights=batch \
      $EXTRA > "$single.log" 2>&1 &
    trackers=zero,csrt,segmentation,segmentation-adapt,motion-posterior,motion-posterior-flip,motion-posterior-mask
    segmenter=(--segmenter "$single/checkpoint.pt") nets+=("$single")
  fi
  wait
  $PY -m bmvtrack.evaluate --data "$DAVIS" --layout davis2016 --resolution 240p --split "$test_split" \
    --trackers "$trackers" "${segmenter[@]}" \
    --motion-net "$motion/checkpoint.pt" --out "$EXP_DIR/eval-f$k" --no-wandb --no-progress > "$EXP_DIR/eval-f$k.log" 2>&1
  for net in "${nets[@]}"; do
    for crop in gt tracking; do
      $PY -m bmvtrack.evaluate_vae --checkpoint "$net/checkpoint.pt" --data "$DAVIS" --layout davis2016 \
        --resolution 240p --split "$test_split" --crop $crop --threads 1 --out "$net/eval" --no-wandb --quiet \
        >> "$net.log" 2>&1
    done
  done
  echo "fold $k done: $(date '+%T')"
done
