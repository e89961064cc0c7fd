#!/usr/bin/env bash
# One run on a GPU machine measures everything (bench/gpu_check.py): per variant, tokens/s, MFU,
# peak GPU memory and the explain stage's rows/s, one line each. Without CUDA it says so and exits 0.
#   bash scripts/gpu_check.sh                       # model=small on trainer=gpu and trainer=ddp
#   GPU_CHECK_MODELS=<model option> bash scripts/gpu_check.sh   # add models (e.g. a pretrained encoder)
#   GPU_PEAK_BF16_TFLOPS=989 ...                    # a device the peak table does not know
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: skipped: no CUDA device (torch.cuda.is_available() is False)"
  exit 0
fi
# MLflow samples GPU memory through NVML (peak memory line).
"$PY" -c "import pynvml" 2>/dev/null || "$PY" -m pip install -q nvidia-ml-py
exec "$PY" bench/gpu_check.py
