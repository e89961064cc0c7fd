"""A pipeline stopped by SIGTERM or Ctrl-C (SIGINT) leaves its run KILLED, never RUNNING or FINISHED."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_marks_the_run_killed(tmp_path, sig):
    env = {**os.environ, "GLASSWORKS_ROOT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "out.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.train", "trainer.max_epochs=50", "data.source.n_train=4000",
             "callbacks.rich_progress_bar=null", "logger.system_metrics=false"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while "MLflow run" not in log.read_text():
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        time.sleep(3)  # inside training
        proc.send_signal(sig)
        assert proc.wait(timeout=120) != 0
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    assert runs[0].info.status == "KILLED"
    assert runs[0].data.tags["glassworks.failed_stage"] == "train"
