"""The parts of multi-machine support that need no server: who owns the run under torchrun/srun,
and how long a write waits for an unreachable tracking server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient
from pytorch_lightning.strategies import DDPStrategy

from glassworks.tracking.ranks import for_this_rank
from glassworks.tracking.store import StoreUnreachable, is_unreachable, with_retry
from glassworks.tracking.tracker import MLflowTracker, NoTracker
from glassworks.training.distributed import LaunchRank, ddp_strategy

_LAUNCH_VARS = ("TORCHELASTIC_RUN_ID", "RANK", "LOCAL_RANK", "GROUP_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID",
                "SLURM_NNODES", "SLURM_JOB_NAME")


@pytest.fixture
def launch_env(monkeypatch):
    for name in _LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)

    return set_env


def test_a_plain_process_owns_its_run(launch_env, tmp_path):
    launch = LaunchRank.from_env()
    assert launch == LaunchRank("none") and launch.owns_run and not launch.external
    tracker = MLflowTracker(store_dir=str(tmp_path))
    assert for_this_rank(tracker) is tracker


def test_torchrun_ranks(launch_env, tmp_path):
    launch_env(TORCHELASTIC_RUN_ID="x", RANK="1", LOCAL_RANK="0", GROUP_RANK="1", WORLD_SIZE="2",
               LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="29500")
    launch = LaunchRank.from_env()
    assert launch == LaunchRank("torchrun", global_rank=1, local_rank=0, node_rank=1, world_size=2, num_nodes=2)
    follower = for_this_rank(MLflowTracker(store_dir=str(tmp_path)))
    assert isinstance(follower, NoTracker) and follower.run_id is None
    # The ranks exist already: DDP joins them instead of spawning.
    assert isinstance(ddp_strategy(process_group_backend="gloo"), DDPStrategy)
    assert ddp_strategy(process_group_backend="gloo")._start_method == "popen"


def test_srun_ranks(launch_env):
    launch_env(SLURM_NTASKS="4", SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NNODES="2",
               SLURM_JOB_NAME="train")
    launch = LaunchRank.from_env()
    assert launch.launcher == "srun" and launch.owns_run and (launch.world_size, launch.num_nodes) == (4, 2)


def test_spawned_ddp_keeps_spawning(launch_env):
    assert ddp_strategy(process_group_backend="gloo")._start_method == "spawn"


_EXIT_SCRIPT = """
import atexit, os
import pytorch_lightning as pl, torch, torch.distributed as dist
from torch.utils.data import DataLoader, TensorDataset
from glassworks.training.distributed import ddp_strategy

class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

# atexit runs last-registered first: this line runs after whatever the fit registered.
atexit.register(lambda: print("process group at exit:", dist.is_initialized(), flush=True))
trainer = pl.Trainer(strategy=ddp_strategy(start_method="popen", process_group_backend="gloo"), devices=1,
                     accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=os.environ["ROOT"])
trainer.fit(Tiny(), DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4))
print("process group after fit:", dist.is_initialized(), flush=True)
"""


def test_a_rank_leaves_its_gloo_process_group_before_the_interpreter_finalizes(launch_env, tmp_path):
    # Lightning destroys only NCCL groups at exit; a gloo group left to finalization can abort the
    # rank (SIGABRT) after its fit finished, which fails the launcher's join.
    env = {**os.environ, "ROOT": str(tmp_path), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_closed_port())}
    out = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "process group after fit: True" in out.stdout  # the fit leaves it for what follows
    assert "process group at exit: False" in out.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_retried_until_the_timeout(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client = MlflowClient(f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    with pytest.raises(StoreUnreachable, match=r"did not answer for \d+ s while reading run .*server_timeout_s=1"):
        with_retry(lambda: client.get_run("0" * 32), "reading run", timeout_s=1)
    assert 1 <= time.monotonic() - start < 30


def test_other_errors_are_not_retried():
    calls = []

    def fail() -> None:
        calls.append(1)
        raise ValueError("bad value")

    with pytest.raises(ValueError):
        with_retry(fail, "x", timeout_s=10)
    assert len(calls) == 1
    assert is_unreachable(ConnectionRefusedError()) and not is_unreachable(ValueError("no"))


def test_an_answer_cut_off_by_a_dying_server_is_unreachable():
    # What MLflow's REST client raised when the server was killed while answering a log-batch.
    cut = Exception("API request to http://127.0.0.1:50987/api/2.0/mlflow/runs/log-batch failed with exception "
                    "('Connection broken: IncompleteRead(0 bytes read, 2 more expected)', IncompleteRead(0 bytes "
                    "read, 2 more expected))")
    assert is_unreachable(cut)


def test_a_stage_that_fails_after_the_server_went_away_leaves_the_run_running_to_resume(tmp_path, monkeypatch):
    """The stage's own error comes first (here any error), then the FAILED tags cannot be written:
    the command says the run stays RUNNING and how to resume it, as when logging itself failed."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker = MLflowTracker(store_dir=str(tmp_path / "mlruns"), system_metrics=False, server_timeout_s=1)
    run_id = tracker.start("gone", {})
    tracker._client = MlflowClient(f"http://127.0.0.1:{_closed_port()}")  # the store is no longer there
    with pytest.raises(StoreUnreachable, match=rf"while logging tags .*stays RUNNING.*resume={run_id}") as raised:
        with tracker.lifecycle("train"):
            raise RuntimeError("the model exploded")
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert MlflowClient(tracker.uri).get_run(run_id).info.status == "RUNNING"
