"""GPU check: python bench/gpu_check.py  (scripts/gpu_check.sh runs it; exits 0, skipping, without CUDA)

One run on a lent GPU measures everything, one line per figure. For each variant
(``trainer=gpu`` bf16-mixed, ``trainer=ddp`` on all GPUs; ``model=small`` and any extra model
named in GPU_CHECK_MODELS) it runs the real ``python -m pipeline.run`` into a temporary sqlite
store and reads the run back:

- tokens/s: the run's ``train/tokens_per_sec`` (non-padding training tokens per second, last epoch);
- MFU: tokens/s x training FLOPs per token / (devices x the device's dense bf16 peak), with
  FLOPs per token = 6 x non-embedding parameters + 12 x layers x d_model x sequence length
  (Kaplan et al. 2020; forward + backward);
- peak memory: the highest GPU memory MLflow's system metrics sampled during the run;
- explain rows/s: explained examples / the explain stage's seconds (on the GPU);
- checkpoint writes off the training thread: the train stage's seconds of ``model=small
  trainer=gpu`` over 2 epochs with a resume checkpoint every 50 steps, written in line
  (``trainer.plugins.0.asynchronous=false``) and as by default (``auto``: off the thread when the
  weights live on the GPU), and their ratio (on 2 CPU cores, where auto writes in line, the two
  took as long: glassworks.training.checkpoint_io).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by device-name substring.
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
             "A10G": 70e12, "A10": 125e12, "4090": 165e12, "3090": 71e12, "V100": 0.0}


def device_peak(name: str) -> float | None:
    override = os.environ.get("GPU_PEAK_BF16_TFLOPS")
    if override:
        return float(override) * 1e12
    for key, peak in BF16_PEAK.items():
        if key in name:
            return peak or None  # V100: no bf16
    return None


def flops_per_token(params: dict[str, str]) -> float | None:
    """Training FLOPs per token of our Transformer from its logged config; None for other models."""
    try:
        d, layers, d_ff = (int(params[f"model.{k}"]) for k in ("d_model", "n_layers", "d_ff"))
        seq = int(params["data.max_length"])
    except (KeyError, ValueError):
        return None
    non_embedding = layers * (4 * d * d + 2 * d * d_ff)
    return 6 * non_embedding + 12 * layers * d * seq


def run_variant(label: str, overrides: list[str], workdir: Path) -> dict[str, str]:
    from mlflow import MlflowClient

    store = workdir / label / "mlruns"
    env = {**os.environ, "GLASSWORKS_ROOT": str(workdir / label), "PYTHONPATH": str(ROOT),
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.run", *overrides, f"paths.mlruns_dir={store}",
                           "logger.system_metrics_interval_s=1", "callbacks.rich_progress_bar=null"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {f"{label} failed": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    metrics, params = run.data.metrics, run.data.params
    import torch

    devices = torch.cuda.device_count() if "trainer=ddp" in overrides else 1
    tokens = metrics.get("train/tokens_per_sec")
    # DDP logs one rank's tokens/s (rank 0's share of the batch); the job trains devices x that.
    total = tokens * devices if tokens is not None else None
    flops, peak = flops_per_token(params), device_peak(torch.cuda.get_device_name(0))
    memory = [m.value for key in metrics if key.startswith("system/gpu_") and key.endswith("memory_usage_megabytes")
              for m in client.get_metric_history(run.info.run_id, key)]
    from glassworks.tracking import contract as C

    explain_s = metrics.get(C.stage_time_key("explain"))
    rows = int(params.get("explain.n_examples", "0"))
    return {
        f"{label} tokens/s": f"{total:,.0f} ({devices} device(s))" if total else "n/a",
        f"{label} MFU": (f"{total * flops / (devices * peak):.1%} ({flops / 1e6:.1f} MFLOP/token, "
                         f"peak {peak / 1e12:.0f} TFLOP/s bf16 per device)")
                        if total and flops and peak else "n/a (model FLOPs or device peak unknown)",
        f"{label} peak GPU memory": f"{max(memory) / 1024:.2f} GiB (system-metric samples, GPU 0)" if memory else "n/a",
        f"{label} explain rows/s": f"{rows / explain_s:.1f} ({rows} rows in {explain_s:.1f} s)" if explain_s else "n/a",
        f"{label} test/acc, wall": f"{metrics.get('test/acc', float('nan')):.4f}, {wall:.0f} s",
        f"{label} train stage s": f"{metrics.get(C.stage_time_key('train'), float('nan')):.2f}",
    }


def main() -> int:
    import torch

    sys.path.insert(0, str(ROOT))
    from bench.results import emit

    if not torch.cuda.is_available():
        print("gpu_check: skipped: no CUDA device (torch.cuda.is_available() is False)")
        emit("gpu_check", {}, {"skipped": "no CUDA device"})
        return 0
    print(f"gpu_check: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    common = ["data.source.n_train=20000", "trainer.max_epochs=1", "explain.n_examples=100", "report.enabled=false"]
    models = ["small", *[m for m in os.environ.get("GPU_CHECK_MODELS", "").split(",") if m]]
    variants = [(f"model={m} trainer=gpu", [f"model={m}", "trainer=gpu", *common]) for m in models]
    variants.append(("model=small trainer=ddp", ["model=small", "trainer=ddp", *common]))
    writes = ["model=small", "trainer=gpu", *common, "trainer.max_epochs=2",
              "callbacks.resume_checkpoint.every_n_train_steps=50", "callbacks.resume_checkpoint.min_interval_s=0"]
    variants += [("checkpoints in line", [*writes, "trainer.plugins.0.asynchronous=false"]),
                 ("checkpoints auto", writes)]
    figures: dict[str, str] = {"device": torch.cuda.get_device_name(0), "devices": str(torch.cuda.device_count())}
    with tempfile.TemporaryDirectory(prefix="glassworks-gpu-check-") as tmp:
        for label, overrides in variants:
            for key, value in run_variant(label, overrides, Path(tmp)).items():
                print(f"{key}: {value}", flush=True)
                figures[key] = value
    ratios = {}
    try:
        ratios["checkpoints_auto_over_in_line_train_s"] = (float(figures["checkpoints auto train stage s"])
                                                           / float(figures["checkpoints in line train stage s"]))
        print(f"checkpoint writes off the thread / in line, train stage seconds: "
              f"{ratios['checkpoints_auto_over_in_line_train_s']:.3f}")
    except (KeyError, ValueError, ZeroDivisionError):
        pass  # a variant failed: its line says why
    emit("gpu_check", ratios, figures)  # the other figures are absolute: no CPU baseline on the device
    return 0


if __name__ == "__main__":
    sys.exit(main())
