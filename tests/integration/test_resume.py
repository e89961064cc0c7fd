"""Fault injection: a pipeline killed at any point (kill -9 early, mid-epoch, in the middle of a
checkpoint write, while explaining, while writing the report; SIGTERM) resumes with
``resume=last`` / ``resume=<run_id>`` in the SAME MLflow run and ends, on CPU, with exactly the
metric histories of an uninterrupted run: no step repeated, none missing.

The faults are real: tests/faults/sitecustomize.py makes the process SIGKILL itself at the named
point (see its docstring).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import Run

from pipeline.resume import resume_config, start_run
from pipeline.stage import UserError, build_job
from tests.conftest import ROOT, TINY, compose_config, run_cli

pytestmark = pytest.mark.slow

# 400 examples / 32 = 13 steps per epoch, 26 in all; a resume checkpoint every 5 steps and
# after each validation. No attention heatmaps: drawing them is most of the explain stage's
# time (over a second each on 2 cores) and nothing here looks at them.
ARGS = [*TINY, "callbacks.resume_checkpoint.every_n_train_steps=5", "callbacks.resume_checkpoint.min_interval_s=0", "robustness.enabled=false",
        "explain.methods=[rollout]", "explain.n_examples=8", "explain.n_heatmaps=0"]
# Wall-clock figures differ between any two runs.
TIMED = ("time/", "system/", "train/tokens_per_sec")
KILLED = -signal.SIGKILL
# Lightning's advice that does not apply to these jobs, which every DDP job and every resume printed
# until 2026-12-03: the epoch values are synced by torchmetrics, the data position by the DataModule.
# (the checkpoint folder a resumed fit continues in holds the checkpoints of the fit it continues)
NOT_FOR_US = ("sync_dist=True", "your dataloader is not resumable", "exists and is not empty")


def pipeline(cwd: Path, *args: str, fault: str | None = None):
    env = {"PYTHONPATH": str(ROOT / "tests" / "faults")}  # cli_env puts this checkout's src/ after it
    if fault:
        env["GLASSWORKS_FAULT"] = fault
    return run_cli("pipeline.run", *args, cwd=cwd, env=env)


def only_run(root: Path) -> Run:
    client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def histories(root: Path) -> dict[str, list[tuple[int, float]]]:
    """The metric histories of the only run in ``root``'s store (see :func:`run_histories`)."""
    return run_histories(MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"), only_run(root))


def run_histories(client: MlflowClient, run: Run) -> dict[str, list[tuple[int, float]]]:
    """{metric: sorted (step, value)} of ``run``, without wall-clock figures (they differ between
    any two runs)."""
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics if not key.startswith(TIMED) and not key.endswith(("seconds_per_example",
                                                                                           "seconds_per_step"))}


def resume_file(root: Path) -> Path:
    return Path(only_run(root).data.tags["glassworks.resume_checkpoint"])


def assert_resumed(proc, root: Path, run_id: str, expected: dict, resumes: int) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(root)  # the same run: no second one was created
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.data.tags["glassworks.resumes"] == str(resumes)
    assert "glassworks.error" not in run.data.tags
    got = histories(root)
    assert sorted(got) == sorted(expected)
    assert {k: (v, expected[k]) for k, v in got.items() if v != expected[k]} == {}
    assert len(got["train/loss"]) == 5 and len(got["val/acc"]) == 2
    assert not [advice for advice in NOT_FOR_US if advice in proc.stderr]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, list[tuple[int, float]]]:
    root = tmp_path_factory.mktemp("uninterrupted")
    proc = pipeline(root, *ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return histories(root)


def test_kill_early_then_mid_epoch_resumes_exactly(uninterrupted, tmp_path):
    # Killed at step 3, before any checkpoint: training starts again, in the same run.
    assert pipeline(tmp_path, *ARGS, fault="step:3").returncode == KILLED
    run = only_run(tmp_path)
    assert run.info.status == "RUNNING"  # what a SIGKILL leaves (the doctor would mark it)
    # The resumed job is killed too, at step 17 (mid-epoch 2; its last checkpoint: step 15).
    assert pipeline(tmp_path, "resume=last", fault="step:17").returncode == KILLED
    assert torch.load(resume_file(tmp_path), weights_only=True)["global_step"] == 15
    proc = pipeline(tmp_path, f"resume={run.info.run_id}")
    assert_resumed(proc, tmp_path, run.info.run_id, uninterrupted, resumes=2)


def test_kill_right_after_an_epochs_validation_replays_that_epochs_end(uninterrupted, tmp_path):
    # Killed at step 14: the last checkpoint is the one written after epoch 1's validation (step
    # 13), before the epoch's end ran (train/acc logged, best checkpoint chosen, early stopping).
    assert pipeline(tmp_path, *ARGS, fault="step:14").returncode == KILLED
    assert torch.load(resume_file(tmp_path), weights_only=True)["global_step"] == 13
    proc = pipeline(tmp_path, "resume=last")
    assert_resumed(proc, tmp_path, only_run(tmp_path).info.run_id, uninterrupted, resumes=1)


# task=lm: 600 examples / 32 = 19 steps an epoch, 38 in all.
LM_ARGS = ["experiment=lm_recall", "data.source.n_train=600", "data.source.n_validation=60", "data.source.n_test=60",
           "data.batch_size=32",
           "trainer.max_epochs=2", "trainer=cpu", "callbacks.rich_progress_bar=null", "logger.system_metrics=false",
           "robustness.enabled=false", "explain.n_examples=2", "explain.n_heatmaps=0", "explain.shap.max_evals=64",
           "callbacks.resume_checkpoint.every_n_train_steps=5", "callbacks.resume_checkpoint.min_interval_s=0"]


def test_a_language_model_killed_mid_epoch_resumes_exactly(tmp_path):
    # Until 2026-12-02 its data module kept no position: the resumed epoch began its order again.
    uninterrupted = tmp_path / "uninterrupted"
    uninterrupted.mkdir()
    assert pipeline(uninterrupted, *LM_ARGS).returncode == 0
    killed = tmp_path / "killed"
    killed.mkdir()
    assert pipeline(killed, *LM_ARGS, fault="step:22").returncode == KILLED
    assert torch.load(resume_file(killed), weights_only=True)["global_step"] == 20  # mid-epoch 2
    proc = pipeline(killed, "resume=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected, got = histories(uninterrupted), histories(killed)
    assert sorted(got) == sorted(expected) and "train/loss" in got and "val/answer_acc" in got
    assert {k: (v, expected[k]) for k, v in got.items() if v != expected[k]} == {}


@pytest.mark.parametrize("asynchronous", ["auto", "true"])
def test_kill_during_a_checkpoint_write_keeps_the_previous_one(uninterrupted, tmp_path, asynchronous):
    # The 3rd resume checkpoint (after epoch 1's validation, step 13) dies half written. "auto" on
    # the CPU writes in line; "true" writes on the writer thread while training goes on, so the
    # run may hold metrics of steps after 13, which the resumed run (from step 10) skips.
    assert pipeline(tmp_path, *ARGS, f"trainer.plugins.0.asynchronous={asynchronous}",
                    fault="save:3").returncode == KILLED
    path = resume_file(tmp_path)
    partial = list(path.parent.glob(".resume.ckpt.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size >= 64 * 1024
    assert torch.load(path, weights_only=True)["global_step"] == 10  # the previous one, whole
    proc = pipeline(tmp_path, "resume=last")
    assert "removed" in proc.stdout + proc.stderr and not partial[0].exists()
    assert_resumed(proc, tmp_path, only_run(tmp_path).info.run_id, uninterrupted, resumes=1)


def test_kill_while_explaining_then_reporting_never_retrains(uninterrupted, tmp_path):
    assert pipeline(tmp_path, *ARGS, fault="explain:2").returncode == KILLED
    run_id = only_run(tmp_path).info.run_id
    assert only_run(tmp_path).data.tags["glassworks.stages_done"] == "train"
    checkpoint = resume_file(tmp_path)
    trained_at = checkpoint.stat().st_mtime_ns
    # Ctrl-C while explaining: one line and exit 130, not Python's traceback; the run is KILLED and
    # its last line says how to continue it.
    proc = pipeline(tmp_path, "resume=last", fault="explain_signal:SIGINT:1")
    assert proc.returncode == 130 and "Traceback" not in proc.stderr
    assert proc.stderr.rstrip().endswith("stopped: Ctrl-C")
    assert f"run {run_id} is KILLED (Ctrl-C); continue it with: python -m pipeline.run resume={run_id}" in proc.stdout
    assert only_run(tmp_path).info.status == "KILLED"
    assert pipeline(tmp_path, "resume=last", fault="report").returncode == KILLED
    assert only_run(tmp_path).data.tags["glassworks.stages_done"] == "explain,train"
    proc = pipeline(tmp_path, "resume=last")
    assert "train: done before the resume, skipped" in proc.stdout + proc.stderr
    assert "explain: done before the resume, skipped" in proc.stdout + proc.stderr
    assert checkpoint.stat().st_mtime_ns == trained_at  # no training happened since
    assert_resumed(proc, tmp_path, run_id, uninterrupted, resumes=3)
    assert only_run(tmp_path).data.tags["glassworks.stages_done"] == "explain,report,train"


def test_sigterm_stops_after_a_checkpoint_and_resumes(uninterrupted, tmp_path):
    proc = pipeline(tmp_path, *ARGS, fault="signal:SIGTERM:7")
    assert proc.returncode == 130 and "Traceback" not in proc.stderr  # exit 1 until 2026-12-03
    assert "stopped: received SIGTERM: stopped at step 7, resume from" in proc.stderr
    run = only_run(tmp_path)
    assert run.info.status == "KILLED" and run.data.tags["glassworks.failed_stage"] == "train"
    assert "received SIGTERM: stopped at step 7" in run.data.tags["glassworks.error"]
    assert f"continue it with: python -m pipeline.run resume={run.info.run_id}" in proc.stdout
    assert "Detected KeyboardInterrupt" not in proc.stderr  # Lightning's word for our SIGTERM stop
    assert torch.load(resume_file(tmp_path), weights_only=True)["global_step"] == 7
    proc = pipeline(tmp_path, f"resume={run.info.run_id}")
    assert_resumed(proc, tmp_path, run.info.run_id, uninterrupted, resumes=1)

    # A finished run has nothing left to resume.
    cfg = compose_config(tmp_path, [f"resume={run.info.run_id}"], "run")
    with pytest.raises(UserError, match=f"resume={run.info.run_id}: run {run.info.run_id} is FINISHED"):
        resume_config(cfg)
    with pytest.raises(UserError, match="resume=last: no unfinished run of pipeline.run in experiment 'glassworks'"):
        resume_config(compose_config(tmp_path, ["resume=last"], "run"))


def test_resume_of_an_unknown_or_foreign_run_is_one_message(tmp_path):
    with pytest.raises(UserError, match=r"resume=0123abcd: no such run \(no run id starts with 0123abcd\) in sqlite:///"):
        resume_config(compose_config(tmp_path, ["resume=0123abcd"], "run"))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.create_experiment("glassworks")
    train_run = client.create_run(experiment, tags={"glassworks.task": "train"}).info.run_id
    with pytest.raises(UserError, match=f"started by pipeline.train; resume it with python -m "
                                        f"pipeline.train resume={train_run}"):
        resume_config(compose_config(tmp_path, [f"resume={train_run}"], "run"))
    with pytest.raises(UserError, match="has no config/config.yaml"):
        resume_config(compose_config(tmp_path, [f"resume={train_run}"], "train"))
    # The data under the run's config changed since it started: an exact resume is impossible.
    client.set_tag(train_run, "glassworks.data.digest", "0" * 64)
    job = build_job(compose_config(tmp_path, [], "train"))
    with pytest.raises(UserError, match=f"resume={train_run}: the data changed since the run started "
                                        r"\(digest [0-9a-f]{12}, the run's 000000000000\)"):
        start_run(job, client.get_run(train_run))
    assert client.get_run(train_run).info.status == "RUNNING" and "glassworks.resumes" not in \
        client.get_run(train_run).data.tags
