"""Sweep benchmark: python bench/bench_sweeps.py [--epochs 1] [--n-train 400] [--repeats 2] [--no-append]

Runs the same 2x2 grid (model.n_layers=1,2 seed=0,1) of full ``pipeline.run`` jobs twice, as a
user would (``python -m pipeline.run -m ...`` in a subprocess, fresh sqlite store each time), and
prints, measured side by side in this one run:

1. what the sweep machinery costs per job against the job's own time (ratio). The machinery is
   the parent run's set-up (store, experiment, parent run, sweep-level params; logged by the
   parent as ``sweep/open_s``), its summary (table, plots, best child, model registration;
   ``sweep/summary_s``) and, per job, finding the parent and writing the job record (timed
   here in-process). A job's own time is its child run's duration;
2. wall time of the sequential sweep (basic launcher) vs ``hydra/launcher=joblib
   hydra.launcher.n_jobs=2`` on this machine (ratio; cores as ``os.cpu_count()``), and the
   same with ``OMP_NUM_THREADS=1`` (one torch thread per parallel job).

The figures are appended to bench/README.md under a "Sweeps" heading.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results import emit  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

from glassworks.tracking.sweep import JobRecord, SweepInfo  # noqa: E402

GRID = ["model.n_layers=1,2", "seed=0,1"]


def job_overrides(epochs: int, n_train: int) -> list[str]:
    return [f"data.source.n_train={n_train}", "data.source.n_validation=100", "data.source.n_test=100",
            "data.batch_size=32", f"trainer.max_epochs={epochs}", "trainer=cpu",
            "callbacks.rich_progress_bar=null", "logger.system_metrics=false",
            "explain.n_examples=8", "explain.methods=[rollout,input_x_gradient]",
            "robustness.enabled=false"]


def run_sweep(tmp: Path, overrides: list[str], **extra_env: str) -> tuple[float, MlflowClient]:
    tmp.mkdir(parents=True)
    env = {**os.environ, "GLASSWORKS_ROOT": str(tmp), "PYTHONPATH": str(ROOT), **extra_env}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pipeline.run", "-m", *overrides], cwd=tmp, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(out.stderr[-4000:])
    return wall, MlflowClient(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")


def sweep_runs(client: MlflowClient) -> tuple[object, list]:
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = next(r for r in runs if r.data.tags.get("glassworks.sweep_role") == "parent")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    if len(children) != 4 or any(c.info.status != "FINISHED" for c in children):
        raise SystemExit(f"expected 4 FINISHED children, got {[c.info.status for c in children]}")
    return parent, children


def open_on_existing_store_s(client: MlflowClient, tmp: Path) -> float:
    """The parent's set-up where the store and experiment already exist (every sweep after the
    first): one more parent run in the benchmark's own temporary store."""
    from glassworks.tracking.sweep import SweepParent
    from glassworks.tracking.tracker import MLflowTracker

    tracker = MLflowTracker(store_dir=str(Path(client.tracking_uri.removeprefix("sqlite:///")).parent),
                            system_metrics=False)
    parent = SweepParent(tracker, tmp, "bench-open", "val/acc", swept_keys=["seed"])
    start = time.perf_counter()
    parent.open({"glassworks.task": "bench"}, {f"p{i}": i for i in range(150)}, "a: 1\n", ["seed=0,1"])
    seconds = time.perf_counter() - start
    tracker.end("FINISHED")
    return seconds


def per_job_bookkeeping_s(tmp: Path, repeats: int = 200) -> float:
    """A job's own share: find the sweep (env var / JSON file), name its run, write its record."""
    info = SweepInfo(parent_run_id="p" * 32, experiment_id="1", tracking_uri="sqlite:///x.db",
                     name="run-sweep-0101-000000", sweep_dir=str(tmp), swept_keys=["model.n_layers", "seed"])
    info.save()
    overrides = [*job_overrides(1, 400), "model.n_layers=2", "seed=1"]
    start = time.perf_counter()
    for i in range(repeats):
        found = SweepInfo.find(tmp)
        found.child_run_name(i, overrides)
        found.child_tags(i)
        found.write_record(JobRecord(job_num=i, overrides=overrides, status="COMPLETED", return_value=0.5))
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-append", action="store_true", help="print only, leave bench/README.md alone")
    args = parser.parse_args()
    base = [*job_overrides(args.epochs, args.n_train), *GRID]
    parallel = [*base, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    walls: dict[str, list[float]] = {"seq": [], "par": [], "one": []}
    job_times, opens, summaries = [], [], []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # Interleaved, so drift on a shared machine hits every variant alike; medians count.
        for i in range(args.repeats):
            wall, client = run_sweep(tmp / f"sequential{i}", base)
            walls["seq"].append(wall)
            parent, children = sweep_runs(client)
            job_times += [(c.info.end_time - c.info.start_time) / 1000 for c in children]
            opens.append(parent.data.metrics["sweep/open_s"])
            summaries.append(parent.data.metrics["sweep/summary_s"])
            wall, client = run_sweep(tmp / f"joblib{i}", parallel)
            walls["par"].append(wall)
            sweep_runs(client)  # all 4 children present and FINISHED in the parallel store too
            # Two jobs with two torch threads each oversubscribe two cores; one thread per job:
            wall, client = run_sweep(tmp / f"joblib-1thread{i}", parallel, OMP_NUM_THREADS="1")
            walls["one"].append(wall)
            sweep_runs(client)
        per_job = per_job_bookkeeping_s(tmp / "bookkeeping")
        open_again_s = open_on_existing_store_s(client, tmp / "open-again")

    med = statistics.median
    job_s, open_s, summary_s = med(job_times), med(opens), med(summaries)
    seq_wall, par_wall, one_wall = med(walls["seq"]), med(walls["par"]), med(walls["one"])
    machinery = (open_s + summary_s) / 4 + per_job
    again = (open_again_s + summary_s) / 4 + per_job
    lines = [
        f"grid of 4 pipeline.run jobs (2x2, epochs={args.epochs}, n_train={args.n_train}), "
        f"{os.cpu_count()} cores, median of {args.repeats}, load average {load_before:.1f} -> "
        f"{os.getloadavg()[0]:.1f}, {datetime.date.today()}",
        *(f"{label:<60}{value}" for label, value in [
            ("job's own time (child run duration, median)", f"{job_s:8.2f} s"),
            ("parent set-up (new store: schema; experiment, run, params)", f"{open_s:8.3f} s per sweep"),
            ("parent set-up (existing store)", f"{open_again_s:8.3f} s per sweep"),
            ("parent summary (table, plots, best, registry)", f"{summary_s:8.3f} s per sweep"),
            ("per-job bookkeeping (find parent, name, record)", f"{per_job * 1000:8.2f} ms"),
            ("ratio sweep machinery per job / job time", f"{machinery / job_s:8.3f}"),
            ("  the same on an existing store", f"{again / job_s:8.3f}"),
            ("sequential (basic launcher) wall", f"{seq_wall:8.1f} s"),
            ("joblib n_jobs=2 wall", f"{par_wall:8.1f} s"),
            ("ratio joblib(2) / sequential wall", f"{par_wall / seq_wall:8.3f}"),
            ("joblib n_jobs=2, OMP_NUM_THREADS=1 wall", f"{one_wall:8.1f} s"),
            ("ratio joblib(2, 1 thread) / sequential wall", f"{one_wall / seq_wall:8.3f}"),
        ]),
    ]
    print("\n".join(lines))
    if not args.no_append:
        append_readme(lines)
    emit("sweeps", {
        "machinery_per_job_over_job_time": machinery / job_s,
        "machinery_per_job_over_job_time_existing_store": again / job_s,
        "joblib2_over_sequential_wall": par_wall / seq_wall,
        "joblib2_1thread_over_sequential_wall": one_wall / seq_wall,
    }, {
        "job_s": job_s, "parent_open_s": open_s, "parent_open_existing_store_s": open_again_s,
        "parent_summary_s": summary_s, "per_job_bookkeeping_ms": per_job * 1000,
        "sequential_wall_s": seq_wall, "joblib2_wall_s": par_wall, "joblib2_1thread_wall_s": one_wall,
        "load_average_start": load_before, "repeats": args.repeats})


def append_readme(lines: list[str]) -> None:
    """Add the figures at the end of the "Sweeps" section (created if missing); other
    sections, written by other benchmarks, stay as they are."""
    readme = ROOT / "bench" / "README.md"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = "```\n" + "\n".join(lines) + "\n```\n"
    heading = "\n## Sweeps\n"
    if heading not in text:
        text = (text.rstrip("\n") + "\n" + heading + "\n`python bench/bench_sweeps.py` (what it measures: "
                "its docstring). Newest figures last.\n")
    start = text.index(heading) + len(heading)
    following = text.find("\n## ", start)
    end = len(text) if following == -1 else following + 1
    section = text[start:end].rstrip("\n") + "\n\n" + block
    readme.write_text(text[:start] + section + ("\n" + text[end:] if end < len(text) else ""))


if __name__ == "__main__":
    main()
