"""Which process of a distributed job this is, and the DDP strategy that fits how it was launched.

Two ways to get several training processes:

- spawned: ``trainer=ddp_cpu`` / ``trainer=ddp`` on one machine. The entry point runs once and
  Lightning spawns the ranks; the launching process is global rank 0.
- launched externally: ``torchrun`` (one command per node) or SLURM's ``srun``. The entry point
  runs once per rank, so everything before ``trainer.fit`` (config, data, the MLflow run) happens
  in every rank; only global rank 0 may create and own the run.

Rank is read the way Lightning reads it (its TorchElastic and SLURM cluster environments), before
any Trainer exists, so the pipeline can decide who tracks before it creates anything. During a fit,
:func:`agree` makes every rank take the same branch where a rank deciding alone would leave the
others waiting in another collective.
"""

from __future__ import annotations

import atexit
import os
import socket
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from pytorch_lightning.strategies import DDPStrategy

from glassworks.startup import rank_started
from glassworks.tracking import contract as C


@dataclass(frozen=True)
class LaunchRank:
    """This process's place in an externally launched job (all zeros/ones when it is alone)."""

    launcher: str  # "torchrun" | "srun" | "none"
    global_rank: int = 0
    local_rank: int = 0
    node_rank: int = 0
    world_size: int = 1
    num_nodes: int = 1

    @classmethod
    def from_env(cls) -> LaunchRank:
        env = os.environ
        if TorchElasticEnvironment.detect():
            world = int(env["WORLD_SIZE"])
            per_node = int(env.get("LOCAL_WORLD_SIZE", world))
            return cls("torchrun", int(env["RANK"]), int(env.get("LOCAL_RANK", 0)),
                       int(env.get("GROUP_RANK", 0)), world, max(1, world // max(1, per_node)))
        if SLURMEnvironment.detect() and int(env.get("SLURM_NTASKS", "1")) > 1:
            return cls("srun", int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)),
                       int(env.get("SLURM_NODEID", 0)), int(env["SLURM_NTASKS"]),
                       int(env.get("SLURM_NNODES", env.get("SLURM_JOB_NUM_NODES", 1))))
        return cls("none")

    @property
    def owns_run(self) -> bool:
        """Global rank 0 creates the MLflow run and runs everything after training."""
        return self.global_rank == 0

    @property
    def external(self) -> bool:
        return self.launcher != "none"


def distributed_tags(world_size: int, num_nodes: int, launch: LaunchRank) -> dict[str, str]:
    """Tags of the run that global rank 0 owns: how many processes trained it, on how many nodes."""
    return {
        C.TAG_DIST_WORLD_SIZE: str(world_size),
        C.TAG_DIST_NUM_NODES: str(num_nodes),
        C.TAG_DIST_LAUNCHER: launch.launcher if launch.external else ("spawn" if world_size > 1 else "none"),
        C.TAG_DIST_RANKS: ",".join(str(r) for r in range(world_size)),
        C.TAG_DIST_OWNER: f"global rank {launch.global_rank} (node {launch.node_rank}, "
                                 f"local rank {launch.local_rank}) on {socket.gethostname()}",
    }


class RankStrategy(DDPStrategy):
    """Lightning's DDP. A rank that it spawned imported the pipeline with the cyclic collector off
    (:mod:`glassworks.startup`); the rank's work starts in ``setup_environment``, and it leaves the
    process group when the process exits (:func:`_leave_process_group_at_exit`)."""

    def __init__(self, start_method: str = "spawn", **kwargs: Any) -> None:
        super().__init__(start_method=start_method, **kwargs)
        self.spawns_ranks = start_method == "spawn"

    def setup_environment(self) -> None:
        rank_started()
        super().setup_environment()
        atexit.unregister(_leave_process_group_at_exit)  # once, however many fits the process runs
        atexit.register(_leave_process_group_at_exit)


def _leave_process_group_at_exit() -> None:
    """Destroy the process group while the interpreter is still whole. Lightning does this at exit
    for NCCL only: a gloo group left to the interpreter's finalization can abort the process
    ("terminate called without an active exception", SIGABRT: gloo's threads release work holding
    tensors after Python is gone; pytorch/pytorch#190489), and a spawned rank that aborts after its
    fit finished fails the launcher's join, so the whole train stage. Local, no collective."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def ddp_strategy(start_method: str = "spawn", **kwargs: Any) -> DDPStrategy:
    """Lightning's DDP; under torchrun or srun the ranks already exist, so nothing is spawned
    (``popen`` with an external launcher only joins the process group)."""
    if LaunchRank.from_env().external:
        start_method = "popen"
    return RankStrategy(start_method=start_method, **kwargs)


def leave_process_group() -> None:
    """After ``fit`` under torchrun/srun: every rank leaves the process group, so that what rank 0
    does alone afterwards (test, explain, report) does no collective with ranks that have exited
    (torchmetrics syncs over any initialised group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def group_rank_and_size() -> tuple[int, int]:
    """(rank, world size) in the initialized process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def from_every_rank(value: Any) -> list[Any]:
    """`value` of every rank of the process group, in rank order (one all_gather_object; a single
    process's own, in a list of one). Collective: every rank must call it."""
    import torch.distributed as dist

    size = group_rank_and_size()[1]
    if size <= 1:
        return [value]
    gathered: list[Any] = [None] * size
    dist.all_gather_object(gathered, value)
    return gathered


def agree(trainer: pl.Trainer, *flags: bool) -> tuple[bool, ...]:
    """Each flag, True on every rank when it is True on any (one all-reduce of them all; a single
    process returns them as they are). Every rank must take the same branch: a save holds a
    barrier and a stop ends the process group, so a rank deciding alone (its own clock past
    ``min_interval_s`` a moment before the others', a signal that reached it first) would leave the
    others waiting in a different collective."""
    if trainer.world_size <= 1:
        return flags
    votes = torch.tensor([float(flag) for flag in flags], device=trainer.strategy.root_device)  # (F,)
    return tuple(bool(vote) for vote in trainer.strategy.reduce(votes, reduce_op="max").tolist())
