"""Run states: SIGTERM or Ctrl-C (SIGINT) -> KILLED after a last checkpoint; an exception in any
stage, or on any DDP rank -> FAILED with the error and the stage as tags. Never RUNNING, never a
crash recorded as FINISHED."""

from __future__ import annotations

import json
import signal
import time

import pytest
import torch
from mlflow import MlflowClient

from tests.conftest import ROOT, TINY, assert_imports_this_checkout, cli_env, run_cli, start_cli

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_marks_the_run_killed(tmp_path, sig):
    env = cli_env(tmp_path)
    assert_imports_this_checkout(env, tmp_path)
    log = tmp_path / "out.txt"
    proc = start_cli("pipeline.train", "trainer.max_epochs=50", "data.source.n_train=4000",
                     "callbacks.rich_progress_bar=null", "logger.system_metrics=false",
                     "callbacks.resume_checkpoint.every_n_train_steps=5", "callbacks.resume_checkpoint.min_interval_s=0", cwd=tmp_path, log=log)
    try:
        deadline = time.time() + 300  # start-up plus the first 5 steps; minutes on a loaded machine
        while not list(tmp_path.glob("outputs/**/resume/resume.ckpt")):  # inside training
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        proc.send_signal(sig)
        assert proc.wait(timeout=120) != 0
    finally:  # a failed wait must not leave 50 epochs of training behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    assert runs[0].info.status == "KILLED"
    assert runs[0].data.tags["glassworks.failed_stage"] == "train"
    # It stopped between two steps, after writing the checkpoint that `resume=` continues from.
    assert f"received {sig.name}: stopped at step" in runs[0].data.tags["glassworks.error"]
    checkpoint = torch.load(runs[0].data.tags["glassworks.resume_checkpoint"], weights_only=True)
    assert checkpoint["global_step"] > 0


FAULTS = {"PYTHONPATH": str(ROOT / "tests" / "faults")}  # cli_env puts this checkout's src/ after it
# The stages run for real but small: what is checked is how a failure is recorded, not the
# figures (no heatmaps: over a second each to draw; a short attack and curves).
SMALL = [*TINY, "trainer.max_epochs=1", "explain.methods=[rollout]", "explain.n_examples=8",
         "explain.n_heatmaps=0", "robustness.stability_examples=4", "robustness.curve_k=4",
         "robustness.attack.max_edits=2", "robustness.attack.n_candidates=5"]


def _only_run(root):
    client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    return client, runs[0]


@pytest.mark.parametrize("stage", ["train", "explain", "robustness", "report"])
def test_an_exception_in_any_stage_fails_the_run_naming_stage_and_error(tmp_path, stage):
    proc = run_cli("pipeline.run", *SMALL, cwd=tmp_path, env={**FAULTS, "GLASSWORKS_FAULT": f"raise:{stage}"})
    assert proc.returncode == 1
    assert f"injected failure in the {stage} stage" in proc.stderr  # a crash keeps its traceback
    client, run = _only_run(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags["glassworks.failed_stage"] == stage
    assert run.data.tags["glassworks.error"] == f"InjectedFault: injected failure in the {stage} stage"
    error_txt = client.download_artifacts(run.info.run_id, "error.txt", str(tmp_path))
    assert "Traceback" in open(error_txt).read()
    done = {"train": "", "explain": "train", "robustness": "explain,train", "report": "explain,robustness,train"}
    assert run.data.tags.get("glassworks.stages_done", "") == done[stage]


def test_a_failure_on_one_ddp_rank_fails_the_run(tmp_path):
    args = [o for o in TINY if not o.startswith("trainer=")]
    probes = tmp_path / "gc"
    probes.mkdir()
    proc = run_cli("pipeline.train", *args, "trainer=ddp_cpu", cwd=tmp_path,
                   env={**FAULTS, "GLASSWORKS_FAULT": "raise_rank:1:2", "GLASSWORKS_GC_PROBE": str(probes)})
    assert proc.returncode != 0
    _, run = _only_run(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags["glassworks.failed_stage"] == "train"
    assert "injected failure on rank 1 at step 2" in run.data.tags["glassworks.error"]
    # The spawned ranks imported the pipeline without the cyclic collector (glassworks.startup);
    # by their first step it is on again, with the imports frozen.
    ranks = {s["rank"]: s for s in (json.loads(p.read_text()) for p in probes.glob("*.json"))}
    assert set(ranks) == {0, 1}, ranks
    for state in ranks.values():
        assert state["enabled"] and not state["paused"] and state["frozen"] > 50_000, ranks
