#!/usr/bin/env bash
# Set up (once) and run the whole pipeline on the embedded synthetic default.
# Extra arguments go to `python -m bmvtrack.pipeline` (e.g. --quick, --force, --seed N).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m bmvtrack.pipeline "$@"
