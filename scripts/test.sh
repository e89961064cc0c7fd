#!/usr/bin/env bash
# Install, then run the whole test suite (slow tests included) in 2 worker processes, a test
# file per worker at a time (module fixtures such as a trained run are built once), in
# collection order: tests/conftest.py puts the files with real training first, so the short
# unit files fill the end (xdist's default reorders files by test count, which left the few-test
# minute-long subprocess files for last, on one worker).
# GLASSWORKS_TEST_WORKERS=0 runs it in this one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
workers="${GLASSWORKS_TEST_WORKERS:-2}"
if [ "$workers" = "0" ]; then
  exec .venv/bin/python -m pytest --durations=25 "$@"
fi
exec .venv/bin/python -m pytest -n "$workers" --dist loadfile --no-loadscope-reorder --durations=25 "$@"
