#!/usr/bin/env bash
# The motion posterior on the synthetic test set (generator seed 1000: videos nothing trains on):
# the motion posterior (configs/pretrain_motion.yaml) and the single-crop βMVUnet
# (configs/pretrain_default.yaml) trained side by side for the same number of steps on the
# synthetic default (data/synth, generated when absent), then evaluate (zero, csrt, segmentation,
# segmentation-adapt, motion-posterior) and evaluate_vae of both networks on data/synth-test.
# Environment: STEPS (default 800: two cycles of the cyclical learning rate, ending at its low point), PY (default .venv/bin/python), EXP_DIR (default runs/synth_motion),
# SEEDS (default "0": one pair of networks per seed, each evaluated), EXTRA (added to both pretraining runs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python} STEPS=${STEPS:-800} EXP_DIR=${EXP_DIR:-runs/synth_motion} SEEDS=${SEEDS:-0} EXTRA=${EXTRA:-}
TEST=data/synth-test
export OMP_NUM_THREADS=1
mkdir -p "$EXP_DIR"
[ -d "$TEST" ] || $PY -m bmvtrack.data.synth --out "$TEST" --seed 1000 --videos 15 --quiet
for s in $SEEDS; do
  motion="$EXP_DIR/motion-s$s" single="$EXP_DIR/mvunet-s$s"
  common=(--no-wandb --quiet --max-steps "$STEPS" --time-budget 0 --set epochs=100000 --set threads=1 --set seed="$s")
  # shellcheck disable=SC2086
  $PY -m bmvtrack.pretrain_vae --config configs/pretrain_motion.yaml --out "$motion" "${common[@]}" \
    --set prior="$motion/relative_prior.json" $EXTRA > "$motion.log" 2>&1 &
  # shellcheck disable=SC2086
  $PY -m bmvtrack.pretrain_vae --config configs/pretrain_default.yaml --out "$single" "${common[@]}" \
    --set prior="$single/prior.json" $EXTRA > "$single.log" 2>&1 &
  wait
  $PY -m bmvtrack.evaluate --data "$TEST" --layout davis2017 --trackers zero,csrt,segmentation,segmentation-adapt,motion-posterior,motion-posterior-flip \
    --segmenter "$single/checkpoint.pt" --motion-net "$motion/checkpoint.pt" --out "$EXP_DIR/eval-s$s" --no-wandb \
    --no-progress > "$EXP_DIR/eval-s$s.log" 2>&1
  for net in "$motion" "$single"; do
    for crop in gt tracking; do
      $PY -m bmvtrack.evaluate_vae --checkpoint "$net/checkpoint.pt" --data "$TEST" --layout davis2017 --crop $crop \
        --threads 1 --out "$net/eval" --no-wandb --quiet >> "$net.log" 2>&1
    done
  done
  echo "seed $s done: $(date '+%T')"
done
