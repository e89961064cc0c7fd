"""``hydra/launcher=submitit_local``: a sweep through submitit's local executor (the pickling, job
folders, shared sweep directory and requeueing of ``submitit_slurm``, without a cluster), with the
sweep's parent run and a child per job as with any launcher. One job is preempted mid-epoch and
requeued by submitit: it continues its own run, to the same histories as its uninterrupted twin."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT, TINY, run_cli, start_cli
from tests.integration.test_resume import NOT_FOR_US, run_histories

pytestmark = pytest.mark.slow


def test_submitit_sweep_job_preempted_mid_epoch_continues_its_own_run(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # Two jobs with the same config; job 0 gets submitit's preemption signal (SIGUSR2) after step 7
    # of 13, as a cluster sends it before a preemption or a time limit.
    env = {"PYTHONPATH": str(ROOT / "tests" / "faults"), "GLASSWORKS_FAULT": "signal:SIGUSR2:7:0"}
    result = run_cli("pipeline.train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                     f"hydra.sweep.dir={sweep_dir}", *TINY, "trainer.max_epochs=1", "seed=0,0",
                     cwd=tmp_path, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ConfigStore schema" not in result.stderr

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("glassworks.sweep_role") == "parent"]
    children = {int(r.data.tags["glassworks.sweep_job"]): r for r in runs if "mlflow.parentRunId" in r.data.tags}
    assert len(parents) == 1 and sorted(children) == [0, 1] and len(runs) == 3  # no second run for job 0
    assert {r.info.status for r in runs} == {"FINISHED"}
    parent = parents[0]
    assert parent.data.tags["glassworks.sweep.launcher"] == "submitit_local"
    assert parent.data.tags["glassworks.sweep.n_failed"] == "0"
    assert {c.data.tags["mlflow.parentRunId"] for c in children.values()} == {parent.info.run_id}

    # Job 0 stopped after step 7 with its checkpoint, its run KILLED; submitit requeued it, and the
    # requeued job continued that run from the checkpoint: the same histories as job 1's.
    preempted, twin = children[0], children[1]
    assert preempted.data.tags["glassworks.resumes"] == "1" and "glassworks.resumes" not in twin.data.tags
    assert preempted.data.tags["glassworks.resume.1"].startswith("was KILLED")
    assert "glassworks.error" not in preempted.data.tags
    got, expected = run_histories(client, preempted), run_histories(client, twin)
    assert sorted(got) == sorted(expected) and "test/acc" in got
    assert {k: (v, expected[k]) for k, v in got.items() if v != expected[k]} == {}

    # Each job went through submitit: pickled, run in its own process, its result written back.
    job_folders = [p for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and p.name.isdigit()]
    assert len(job_folders) == 2
    assert all(list(folder.glob("*_result.pkl")) for folder in job_folders)
    logs = {folder: _job_log(folder) for folder in job_folders}
    requeued = [log for log in logs.values() if "Requeued job" in log]
    assert len(requeued) == 1, [log[-2000:] for log in logs.values()]
    log = requeued[0]
    assert "preempted (received SIGUSR2: stopped at step 7" in log
    assert f"this sweep job ran before as run {preempted.info.run_id[:8]} (KILLED): continuing it" in log
    assert f"continuing from {sweep_dir / '0' / 'resume' / 'resume.ckpt'}" in log
    assert not [advice for advice in NOT_FOR_US if advice in log]


def test_a_sweep_stopped_early_stops_its_submitit_local_jobs(tmp_path):
    # SIGTERM to the sweep's own process (a scheduler's, or `kill`): its jobs, which are its
    # children, stop too and each ends its run KILLED after a step. Until 2026-12-03 they trained on
    # after the sweep had ended, into runs it had marked KILLED.
    sweep_dir, log = tmp_path / "sweep", tmp_path / "sweep.log"
    proc = start_cli("pipeline.train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                     f"hydra.sweep.dir={sweep_dir}", *TINY, "data.source.n_train=4000", "trainer.max_epochs=3",
                     "callbacks.resume_checkpoint.every_n_train_steps=5", "callbacks.resume_checkpoint.min_interval_s=0",
                     "seed=0,1", cwd=tmp_path, log=log)
    try:
        deadline = time.monotonic() + 300
        while len(list(sweep_dir.glob("*/resume/resume.ckpt"))) < 2:  # both jobs are training
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        jobs = psutil.Process(proc.pid).children(recursive=True)
        assert len([j for j in jobs if "submitit.core._submit" in " ".join(j.cmdline())]) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 130  # 1 until 2026-12-03, after a traceback
        _, alive = psutil.wait_procs(jobs, timeout=0.5)  # gone before the sweep's process ended
        assert alive == []
    finally:
        for process in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            process.kill()
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert "stopping the sweep's 2 running submitit_local job(s)" in output
    assert "stopped: received signal SIGTERM" in output and "Traceback" not in output

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and {r.info.status for r in runs} == {"KILLED"}
    # Each job stopped itself, with its checkpoint (not marked KILLED by the parent as still running).
    assert all("received SIGTERM: stopped at step" in c.data.tags["glassworks.error"] for c in children)


def _job_log(folder: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in sorted(folder.glob("*_log.*")))
