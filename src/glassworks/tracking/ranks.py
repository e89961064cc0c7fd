"""Who tracks in a distributed job: global rank 0 owns the MLflow run, every other rank trains
untracked (no run, no metrics, no artifacts of its own)."""

from __future__ import annotations

import logging
from typing import Any

from glassworks.training.distributed import LaunchRank
from glassworks.tracking.tracker import NoTracker

log = logging.getLogger(__name__)


def for_this_rank(tracker: Any, launch: LaunchRank | None = None) -> Any:
    """``tracker`` on global rank 0 (and in any process not started by torchrun/srun); a
    :class:`NoTracker` on every other rank."""
    launch = launch or LaunchRank.from_env()
    if launch.owns_run or not tracker.enabled:
        return tracker
    log.info("global rank %d of %d (%s): training only, rank 0 owns the MLflow run",
             launch.global_rank, launch.world_size, launch.launcher)
    return NoTracker()


def owns_run() -> bool:
    """Whether this process runs the stages after training (explain, robustness, report)."""
    return LaunchRank.from_env().owns_run
