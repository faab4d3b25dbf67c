#!/usr/bin/env bash
# Create .venv once and install bmvtrack into it, with the CPU build of PyTorch on a machine that
# has no torch yet (a bare `pip install torch` would pull a multi-GB CUDA build). Idempotent: a
# second call returns at once unless pyproject.toml changed. Set BMVTRACK_TORCH to install another
# torch spec (e.g. a CUDA build on a GPU machine) before the project.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
stamp=.venv/.bmvtrack-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[setup] installing bmvtrack into .venv (first run takes a few minutes)" >&2
  if ! "$VPY" -c "import torch" 2>/dev/null; then
    "$VPY" -m pip install --quiet --disable-pip-version-check "${BMVTRACK_TORCH:-torch==2.13.0}"
  fi
  "$VPY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
  # exactly one OpenCV distribution: another package may have pulled the non-contrib build
  if "$VPY" -m pip show opencv-python >/dev/null 2>&1 || "$VPY" -m pip show opencv-python-headless >/dev/null 2>&1; then
    "$VPY" -m pip uninstall --quiet -y opencv-python opencv-python-headless
    "$VPY" -m pip install --quiet --force-reinstall --no-deps opencv-contrib-python-headless
  fi
  "$VPY" -c "import cv2, torch, gymnasium, stable_baselines3; assert hasattr(cv2, 'TrackerCSRT_create')"
  touch "$stamp"
fi
