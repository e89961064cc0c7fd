"""A PostgreSQL-backed tracking server with proxied artifacts (scripts/tracking_server.sh): a
parallel sweep against it, and the server killed (-9) and restarted while a job trains."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from glassworks.tracking.logged_model import log_run_model, run_model_id
from glassworks.tracking.tracker import MLflowTracker

from tests.conftest import ROOT, SYSTEM_TEMP, run_cli, start_cli

pytestmark = pytest.mark.slow
SCRIPT = ROOT / "scripts" / "tracking_server.sh"
SMALL = ["data.source.n_train=200", "data.source.n_validation=50", "data.source.n_test=50",
         "trainer=cpu", "callbacks.rich_progress_bar=null", "callbacks.early_stopping=null",
         "logger.system_metrics=false"]


def _server_state(state_dir: Path) -> dict[str, str]:
    lines = (state_dir / "server.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _script(state_dir: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GLASSWORKS_TRACKING_DIR": str(state_dir), "PYTHON": sys.executable,
           "MLFLOW_WORKERS": "1"}
    return subprocess.run(["bash", str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="module")
def server():
    # Not under pytest's private (0700) temp root: PostgreSQL runs as the postgres user.
    state_dir = Path(tempfile.mkdtemp(prefix="glassworks-tracking-", dir=SYSTEM_TEMP))
    started = _script(state_dir, "start")
    if started.returncode == 3:  # PostgreSQL missing and apt-get could not install it
        pytest.skip(f"PostgreSQL unavailable: {started.stderr.strip()}")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        uri = started.stdout.strip().splitlines()[-1].split("=", 1)[1]
        yield uri, state_dir
    finally:
        _script(state_dir, "stop")
        pid = _server_state(state_dir).get("MLFLOW_PID")
        if pid:  # belt and braces: the server's whole process group, by its id
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(state_dir, ignore_errors=True)


def _points(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_parallel_sweep_against_postgres_server(server, tmp_path):
    uri, state_dir = server
    result = run_cli("pipeline.train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     f"logger.tracking_uri={uri}", "logger.experiment_name=sweep-pg", *SMALL,
                     "trainer.max_epochs=2", "seed=0,1", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweep-pg")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    # Two jobs on two joblib workers: concurrent writers to the server, at half the cost of four.
    assert len(parents) == 1 and len(children) == 2
    assert {r.info.status for r in runs} == {"FINISHED"}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert len(_points(client, child.info.run_id, "val/acc")) == 2  # one per epoch
        steps = _points(client, child.info.run_id, "train/loss")
        assert steps and len(steps) == len(set(steps))
        assert "test/acc" in child.data.metrics
        # Proxied artifacts: the job wrote through the server, into the server's folder.
        assert child.info.artifact_uri.startswith("mlflow-artifacts:")
        assert {a.path for a in client.list_artifacts(child.info.run_id)} >= {"config", "tokenizer"}
        assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(run_model_id(client, child.info.run_id))}
    assert len(list((state_dir / "artifacts").rglob("MLmodel"))) >= len(children)


def _start_job(tmp_path: Path, uri: str, *overrides: str) -> Any:
    return start_cli("pipeline.train", f"logger.tracking_uri={uri}", *SMALL, "logger.flush_every_n_steps=2", "logger.flush_min_interval_s=0",
                     "trainer.log_every_n_steps=2", *overrides, cwd=tmp_path, log=tmp_path / "job.log")


def _wait_for_points(client: MlflowClient, experiment: str, job: Any) -> str:
    """The job's run id once its first metric points are in the store."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and job.poll() is None:
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        if runs and "train/loss" in runs[0].data.metrics:
            return runs[0].info.run_id
        time.sleep(0.5)
    raise AssertionError(f"no metrics from the job (exit {job.poll()})")


def _kill_server(state_dir: Path) -> None:
    os.killpg(int(_server_state(state_dir)["MLFLOW_PID"]), signal.SIGKILL)


def _assert_every_point_once(client: MlflowClient, run_id: str, epochs: int) -> None:
    for key in ("train/loss", "val/loss", "val/acc"):
        steps = _points(client, run_id, key)
        assert len(steps) == len(set(steps)), f"{key}: duplicate points {Counter(steps).most_common(3)}"
    assert len(_points(client, run_id, "val/loss")) == epochs
    train_steps = sorted(_points(client, run_id, "train/loss"))
    # log_every_n_steps=2, 4 batches an epoch (200 examples, batch 64): every other step, none missing.
    assert train_steps == list(range(train_steps[0], train_steps[0] + 2 * len(train_steps), 2))
    assert train_steps[-1] >= 4 * epochs - 2


def test_job_survives_server_restart(server, tmp_path):
    uri, state_dir = server
    client = MlflowClient(uri)
    epochs = 4
    job = _start_job(tmp_path, uri, "logger.experiment_name=restart", f"trainer.max_epochs={epochs}")
    try:
        run_id = _wait_for_points(client, "restart", job)
        _kill_server(state_dir)
        time.sleep(2)  # the job keeps training and buffering meanwhile
        restarted = _script(state_dir, "start")
        assert restarted.returncode == 0, restarted.stderr
        assert job.wait(timeout=600) == 0, (tmp_path / "job.log").read_text()[-3000:]
    finally:
        if job.poll() is None:
            job.kill()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    _assert_every_point_once(client, run_id, epochs)
    assert "test/acc" in run.data.metrics


def test_server_gone_past_timeout_fails_clearly_then_resumes(server, tmp_path):
    uri, state_dir = server
    client = MlflowClient(uri)
    epochs = 4
    job = _start_job(tmp_path, uri, "logger.experiment_name=gone", f"trainer.max_epochs={epochs}",
                     "logger.server_timeout_s=5")
    try:
        run_id = _wait_for_points(client, "gone", job)
        _kill_server(state_dir)
        code = job.wait(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
        restarted = _script(state_dir, "start")
    output = (tmp_path / "job.log").read_text()
    assert code != 0
    assert restarted.returncode == 0, restarted.stderr
    message = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(message) == 1, output[-3000:]
    assert "did not answer" in message[0] and "logger.server_timeout_s=5" in message[0]
    assert f"resume={run_id}" in message[0]
    assert client.get_run(run_id).info.status == "RUNNING"

    resumed = run_cli("pipeline.train", f"resume={run_id}", f"logger.tracking_uri={uri}", cwd=tmp_path,
                      timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert client.get_run(run_id).info.status == "FINISHED"
    _assert_every_point_once(client, run_id, epochs)


def test_the_model_is_logged_through_a_server_restart(server):
    """The train stage logs the model after the fit: a server restarting at that moment is waited
    for (up to logger.server_timeout_s), as every other write of the run is. Until 2026-12-02 the
    model's calls retried only a locked sqlite store, and a job that finished training during a
    restart failed in create_logged_model (test_job_survives_server_restart, when the restart fell
    there)."""
    uri, state_dir = server
    tracker = MLflowTracker(tracking_uri=uri, experiment_name="model-restart", system_metrics=False)
    run_id = tracker.start("model", {})
    tracker.log_metrics({"test/acc": 0.75}, step=1)

    def save(path: Path, model: Any) -> None:
        path.mkdir(parents=True)
        model.save(str(path / "MLmodel"))

    _kill_server(state_dir)
    restarted: list[subprocess.CompletedProcess[str]] = []
    restarter = threading.Thread(target=lambda: (time.sleep(2), restarted.append(_script(state_dir, "start"))))
    restarter.start()
    try:
        model_id = log_run_model(tracker, save, "test-model")
    finally:
        restarter.join()
    assert restarted[0].returncode == 0, restarted[0].stderr
    tracker.end("FINISHED")
    client = MlflowClient(uri)
    assert run_model_id(client, run_id) == model_id
    model = client.get_logged_model(model_id)
    assert model.status == LoggedModelStatus.READY and {m.key for m in model.metrics} == {"test/acc"}
