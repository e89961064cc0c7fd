"""Ctrl-C in the terminal of a sweep: the terminal signals the whole process group (the
sweep's process, the launcher's processes, the jobs), as a user's Ctrl-C does. Every job ends its
run KILLED after its current step, with its checkpoint, and the sweep ends with one line and its
summary. Until 2026-12-03 joblib killed its workers mid-step (one run was left for the parent to
mark KILLED), submitit's controllers killed theirs with a second signal, and the sweep's process
printed the traceback of wherever its launcher waited."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from tests.conftest import TINY, cli_env

pytestmark = pytest.mark.slow

# launcher -> (its overrides, jobs training at once). submitit_local is not here (~45 s in CI): its
# jobs get the terminal's SIGINT and then their controller's, which the same-request rule covers
# (tests/unit/test_resume_callback.py), and a SIGTERM to its sweep's process ends with the same
# one line (test_scale_submitit.py); by hand, Ctrl-C stops both its jobs after a step.
LAUNCHERS = {"basic": ([], 1),
             "joblib": (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2)}


def _terminal_like() -> None:
    """In the child before it starts: SIGINT as a terminal's shell leaves it. A command started in
    the background by a non-interactive shell (a CI runner's `cmd &`) inherits SIGINT ignored,
    and Python then installs no handler for it: that sweep process ignores Ctrl-C (as it should)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_ctrl_c_in_the_terminal_stops_a_sweep_after_each_jobs_step(tmp_path, launcher):
    sweep_dir, log = tmp_path / "sweep", tmp_path / "sweep.log"
    overrides, training = LAUNCHERS[launcher]
    args = [*overrides, f"hydra.sweep.dir={sweep_dir}", *TINY, "data.source.n_train=2000",
            "trainer.max_epochs=3", "callbacks.resume_checkpoint.every_n_train_steps=5",
            "callbacks.resume_checkpoint.min_interval_s=0", "seed=0,1"]
    with open(log, "w") as out:  # its own session: the process group a terminal would signal
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.train", "-m", *args], cwd=tmp_path,
                                env=cli_env(tmp_path, None), stdout=out, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True, preexec_fn=_terminal_like)
    try:
        deadline = time.monotonic() + 300
        while len(list(sweep_dir.glob("*/resume/resume.ckpt"))) < training:  # the jobs are training
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    # The basic launcher runs the job in the sweep's process: the interrupt that ends it is the job's.
    assert ("stopped: received SIGINT: stopped at step" if launcher == "basic" else "stopped: Ctrl-C") in output
    assert f"{training} job{'s' * (training > 1)}, {training} killed" in output  # the summary
    assert "basic_sweeper.py" not in output  # the sweep's own process printed no traceback
    assert "leaked semaphore" not in output

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == training + 1 and {r.info.status for r in runs} == {"KILLED"}
    # Each job stopped itself after a step, with its checkpoint: the launcher's second signal
    # (submitit's controller, or ours to joblib's workers) was taken as the same request.
    errors = [c.data.tags["glassworks.error"] for c in children]
    assert all("received SIGINT: stopped at step" in error for error in errors), errors
