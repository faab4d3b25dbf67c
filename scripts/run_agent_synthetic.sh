#!/usr/bin/env bash
# The motion agent on the synthetic test set (generator seed 1000, data/synth-test: videos nothing trains on):
# agents trained on the synthetic default's train split (data/synth) with the synthetic motion posterior
# ($MOTION, from scripts/run_motion_synthetic.sh), each variant and seed, scored on data/synth-test beside the
# same agent untrained and the hand rules. Two runs at a time, one thread each.
# Then: python scripts/summarize_agents.py $EXP_DIR --eval eval-synth-test-all
# Environment: STEPS (default 6000), SEEDS (default "0 1 2"), VARIANTS (default "rl rl-expert supervised"),
# MOTION (default runs/synth_motion/motion-s0/checkpoint.pt), EXP_DIR (default runs/agent_synth), JOBS (default 2), EXTRA.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python} STEPS=${STEPS:-6000} SEEDS=${SEEDS:-"0 1 2"} VARIANTS=${VARIANTS:-"rl rl-expert supervised"}
MOTION=${MOTION:-runs/synth_motion/motion-s0/checkpoint.pt} EXP_DIR=${EXP_DIR:-runs/agent_synth} JOBS=${JOBS:-2}
EXTRA=${EXTRA:-}
export OMP_NUM_THREADS=1 PY STEPS MOTION EXP_DIR EXTRA
[ -d data/synth-test ] || $PY -m bmvtrack.data.synth --out data/synth-test --seed 1000 --videos 15 --quiet
mkdir -p "$EXP_DIR"
run_one() {
  local variant=$1 seed=$2 out="$EXP_DIR/f0-$1-s$2"
  [ -f "$out/eval-synth-test-all-perturbed/overall.csv" ] && return 0  # finished earlier: kept
  # shellcheck disable=SC2086
  $PY -m bmvtrack.train_motion_agent --data data/synth --layout davis2017 --split train \
    --motion-net "$MOTION" --variant "$variant" --seed "$seed" --steps "$STEPS" --out "$out" \
    --overwrite --quiet --no-wandb $EXTRA > "$out.log" 2>&1
  $PY -m bmvtrack.train_motion_agent --score "$out" --data data/synth-test --layout davis2017 --out "$out" --overwrite >> "$out.log" 2>&1
  echo "$(date '+%T') $variant seed $seed done"
}
export -f run_one
for s in $SEEDS; do for v in $VARIANTS; do echo "$v $s"; done; done | xargs -P "$JOBS" -L 1 bash -c 'run_one "$@"' _
