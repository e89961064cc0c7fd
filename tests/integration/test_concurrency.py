"""Concurrent writers on one local sqlite store lose nothing: two pipelines started at the same
moment on a fresh store (both race to create the schema and the experiment), and a joblib sweep
of 8 jobs in 2 processes. Every run present and FINISHED, every metric with its full history."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from glassworks.tracking.logged_model import run_model_id

from tests.conftest import TINY, run_cli, start_cli

pytestmark = pytest.mark.slow

FAST = [*TINY, "trainer.max_epochs=1"]
# One torch thread per process: several tiny jobs share 2 cores.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
EXPECTED = {"train/loss", "train/acc", "val/loss", "val/acc", "val/f1", "test/loss", "test/acc", "test/f1",
            "train/tokens_per_sec"}


def store(cwd: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")


def all_runs(client: MlflowClient) -> list:
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def history_lengths(client: MlflowClient, run) -> dict[str, int]:
    """{metric: number of logged points} (system metrics depend on wall time: left out)."""
    return {key: len(client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics if not key.startswith("system/")}


def assert_complete(client: MlflowClient, runs: list) -> None:
    """Every run FINISHED with the full metric set and the same number of points per metric."""
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    lengths = [history_lengths(client, r) for r in runs]
    for run, length in zip(runs, lengths):
        assert EXPECTED <= set(length), (run.info.run_name, sorted(length))
        assert length["train/loss"] >= 2 and length["val/acc"] == 1, length
    assert all(length == lengths[0] for length in lengths), lengths
    for run in runs:
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config", "checkpoints", "tokenizer"} <= artifacts, artifacts
        assert run_model_id(client, run.info.run_id), run.info.run_name


def test_two_pipelines_started_together_on_a_fresh_store(tmp_path):
    assert not (tmp_path / "mlruns").exists()
    logs = [tmp_path / f"seed{seed}.log" for seed in (0, 1)]
    procs = [start_cli("pipeline.train", *FAST, f"seed={seed}", cwd=tmp_path, env=ONE_THREAD, log=log)
             for seed, log in zip((0, 1), logs)]
    for proc, log in zip(procs, logs):
        code = proc.wait(timeout=300)
        output = log.read_text()
        assert code == 0, output[-4000:]
        assert "already exists" not in output and "database is locked" not in output

    client = store(tmp_path)
    experiments = [e.name for e in client.search_experiments()]
    assert sorted(experiments) == ["Default", "glassworks"], experiments  # created once each
    runs = all_runs(client)
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    assert_complete(client, runs)


def test_joblib_sweep_of_eight_jobs_in_two_processes(tmp_path):
    out = run_cli("pipeline.train", "-m", *FAST, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                  "seed=0,1,2,3", "model.n_layers=1,2", "sweep.register_model_as=null",
                  cwd=tmp_path, env=ONE_THREAD)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "database is locked" not in out.stderr

    client = store(tmp_path)
    runs = all_runs(client)
    (parent,) = [r for r in runs if r.data.tags.get("glassworks.sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 9 and len(children) == 8
    assert sorted(int(c.data.tags["glassworks.sweep_job"]) for c in children) == list(range(8))
    combos = {(c.data.params["seed"], c.data.params["model.n_layers"]) for c in children}
    assert len(combos) == 8
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/n_jobs"] == 8 and parent.data.metrics["sweep/n_failed"] == 0
    assert_complete(client, children)
