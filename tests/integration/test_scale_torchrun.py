"""Two torchrun "nodes" on loopback train one model with DDP (gloo) and make exactly ONE MLflow run,
owned by global rank 0, which alone explains, probes and reports after training."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import cli_env

pytestmark = pytest.mark.slow
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_make_one_run_owned_by_rank_zero(tmp_path):
    port = _free_port()
    store = tmp_path / "mlruns" / "mlflow.db"
    overrides = ["data.source.n_train=200", "data.source.n_validation=50", "data.source.n_test=50",
                 "trainer=ddp_cpu", "trainer.num_nodes=2", "trainer.devices=1", "trainer.max_epochs=1",
                 "callbacks.rich_progress_bar=null", "logger.system_metrics=false",
                 "explain.methods=[raw_attention,rollout]", "explain.n_examples=4", "explain.n_heatmaps=0"]
    # TMPDIR: torchrun's agent keeps a torchelastic_* folder there, which a killed agent leaves.
    env = cli_env(tmp_path, {"OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)})
    nodes = []
    try:
        for node in (0, 1):
            log = open(tmp_path / f"node{node}.log", "w")  # noqa: SIM115 - closed with the process
            nodes.append(subprocess.Popen(
                [str(TORCHRUN), "--nnodes=2", "--nproc-per-node=1", f"--node-rank={node}",
                 "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                 "-m", "pipeline.run", *overrides, f"hydra.run.dir={tmp_path / f'node{node}'}"],
                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        codes = [p.wait(timeout=600) for p in nodes]
    finally:
        for p in nodes:  # each torchrun with its workers (its own session), by its id
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    logs = {n: (tmp_path / f"node{n}.log").read_text() for n in (0, 1)}
    assert codes == [0, 0], {n: text[-3000:] for n, text in logs.items()}

    client = MlflowClient(f"sqlite:///{store}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    run = runs[0]
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["glassworks.dist.world_size"] == "2"
    assert tags["glassworks.dist.num_nodes"] == "2"
    assert tags["glassworks.dist.launcher"] == "torchrun"
    assert tags["glassworks.dist.ranks"] == "0,1"
    assert tags["glassworks.dist.owner"].startswith("global rank 0 ")
    assert set(tags["glassworks.stages_done"].split(",")) == {"train", "explain", "robustness", "report"}
    assert "test/acc" in run.data.metrics and any(k.startswith("explain/") for k in run.data.metrics)
    # Rank 0 did the later stages once; the other rank trained and stopped.
    followers = [text for text in logs.values() if "global rank 1 of 2 (torchrun): training only" in text]
    assert len(followers) == 1 and "MLflow run " not in followers[0]
