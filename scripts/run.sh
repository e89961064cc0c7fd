#!/usr/bin/env bash
# Install, then run the default pipeline end to end on the embedded synthetic data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m pipeline.run "$@"
