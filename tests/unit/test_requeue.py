"""pipeline.requeue: a requeued sweep job finds the run its earlier attempt opened; submitit's
preemption notice becomes a Preempted stop, and only then reaches submitit's own handler.
(The whole path, through submitit_local, is tests/integration/test_scale_submitit.py.)"""

from __future__ import annotations

import os
import signal
import time

import pytest
from mlflow import MlflowClient

from glassworks.tracking.sweep import SweepInfo
from glassworks.preemption import Preempted, preempted
from pipeline.requeue import earlier_attempt, preemption_signal, requeued_when_preempted


def test_preempted_is_found_behind_lightnings_exit():
    stop = Preempted("preempted (received SIGUSR2: stopped at step 7, ...)", signal.SIGUSR2)
    try:
        try:
            raise stop
        except KeyboardInterrupt:
            raise SystemExit(1)  # what Lightning turns a KeyboardInterrupt inside fit into
    except SystemExit as error:
        assert preempted(error) is stop
    assert preempted(KeyboardInterrupt("Ctrl-C")) is None
    assert isinstance(stop, KeyboardInterrupt)  # every layer that tidies up after Ctrl-C does so here


def test_a_requeued_job_finds_its_newest_unfinished_run(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("sweeps")
    parent = client.create_run(experiment, run_name="sweep").info.run_id
    sweep = SweepInfo(parent_run_id=parent, experiment_id=experiment, tracking_uri="", name="sweep",
                      sweep_dir=str(tmp_path))

    def job_run(job: int, status: str, sweep_info: SweepInfo = sweep) -> str:
        run = client.create_run(experiment, tags=sweep_info.child_tags(job)).info.run_id
        client.set_terminated(run, status)
        time.sleep(0.01)  # distinct start times
        return run

    assert earlier_attempt(sweep, 0, client) is None  # a job's first attempt
    job_run(0, "FINISHED")
    assert earlier_attempt(sweep, 0, client) is None  # it finished: a new attempt opens its own run
    killed = job_run(0, "KILLED")
    other_job = job_run(1, "KILLED")
    other_sweep = SweepInfo(parent_run_id=client.create_run(experiment).info.run_id, experiment_id=experiment,
                            tracking_uri="", name="other", sweep_dir=str(tmp_path / "other"))
    job_run(0, "KILLED", other_sweep)
    assert earlier_attempt(sweep, 0, client).info.run_id == killed
    assert earlier_attempt(sweep, 1, client).info.run_id == other_job
    assert earlier_attempt(sweep, 2, client) is None


@pytest.fixture
def submitit_job(monkeypatch):
    """This process as a submitit job: the executor named, a handler on its signal (submitit's
    requeues, then exits with the local executor's requeue code; here it records the call)."""
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    calls: list[int] = []

    def scheduler(signum, frame):
        calls.append(signum)
        raise SystemExit(144)

    previous = signal.signal(signal.SIGUSR2, scheduler)
    yield scheduler, calls
    signal.signal(signal.SIGUSR2, previous)


def test_the_notice_stops_the_job_then_reaches_submitits_handler(submitit_job):
    scheduler, calls = submitit_job
    assert preemption_signal() == signal.SIGUSR2
    with pytest.raises(SystemExit) as exited:
        with requeued_when_preempted() as signum:
            assert signum == signal.SIGUSR2 and signal.getsignal(signal.SIGUSR2) is not scheduler
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(5)  # the handler raises in this thread before the sleep ends
            pytest.fail("no Preempted")
    assert exited.value.code == 144 and calls == [signal.SIGUSR2]
    assert signal.getsignal(signal.SIGUSR2) is scheduler


def test_other_errors_and_other_processes_are_left_alone(submitit_job, monkeypatch):
    scheduler, calls = submitit_job
    with pytest.raises(RuntimeError, match="not a preemption"):
        with requeued_when_preempted():
            raise RuntimeError("not a preemption")
    with pytest.raises(KeyboardInterrupt):
        with requeued_when_preempted():
            raise KeyboardInterrupt("Ctrl-C")
    assert calls == [] and signal.getsignal(signal.SIGUSR2) is scheduler
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    assert preemption_signal() is None  # a plain run, a joblib sweep: nothing changes
    with requeued_when_preempted() as signum:
        assert signum is None and signal.getsignal(signal.SIGUSR2) is scheduler


def test_a_refused_requeue_says_how_to_continue(submitit_job, caplog):
    scheduler, calls = submitit_job

    def refuses(signum, frame):
        raise RuntimeError("Job not requeued because: timed-out too many times.")

    signal.signal(signal.SIGUSR2, refuses)
    with pytest.raises(RuntimeError, match="timed-out too many times"):
        with requeued_when_preempted():
            raise Preempted("preempted (received SIGUSR2: stopped at step 3, ...)", signal.SIGUSR2)
    assert "submitit did not requeue the job" in caplog.text and "resume=" in caplog.text
