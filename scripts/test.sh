#!/usr/bin/env bash
# Set up (once) and run the default test suite; extra arguments go to pytest (e.g. -m slow).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh || exit 1
.venv/bin/python -m pytest -m "not slow" -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "error: pytest collected no tests (exit 5) — treated as a failure" >&2
  exit 1
fi
exit "$rc"
