#!/usr/bin/env bash
# Create .venv once and install bmvtrack into it, with the CPU build of PyTorch on a machine that
# has no torch yet (a bare `pip install torch` would pull a multi-GB CUDA build). Idempotent: a
# second call returns at once unless pyproject.toml or constraints.txt changed. Set BMVTRACK_TORCH to
# install another torch spec (e.g. a CUDA build on a GPU machine) before the project. Every other
# package is installed at the version constraints.txt pins (the versions CI tested); torch is not pinned
# there, so the torch installed first (or already there) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
stamp=.venv/.bmvtrack-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "[setup] installing bmvtrack into .venv (first run takes a few minutes)" >&2
  if ! "$VPY" -c "import torch" 2>/dev/null; then
    "$VPY" -m pip install --quiet --disable-pip-version-check "${BMVTRACK_TORCH:-torch==2.13.0}"
  fi
  "$VPY" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
  # exactly one OpenCV distribution: another package may have pulled the non-contrib build
  if "$VPY" -m pip show opencv-python >/dev/null 2>&1 || "$VPY" -m pip show opencv-python-headless >/dev/null 2>&1; then
    "$VPY" -m pip uninstall --quiet -y opencv-python opencv-python-headless
    "$VPY" -m pip install --quiet --force-reinstall --no-deps -c constraints.txt opencv-contrib-python-headless
  fi
  "$VPY" -c "import cv2, torch, gymnasium, stable_baselines3, imageio_ffmpeg; assert hasattr(cv2, 'TrackerCSRT_create')
imageio_ffmpeg.get_ffmpeg_exe()  # the H.264 encoder the videos use ships inside the wheel"
  touch "$stamp"
fi
