"""The robustness stage: deletion/insertion curves and flip rates per attribution method, an
attribution-guided attack and explanation stability, starting from what the run holds (its
model and ``explanations/attributions.parquet``); logs ``robustness/<method>/<metric>`` and
``robustness/``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from glassworks.scratch import scratch_dir
from glassworks.tasks.base import Task
from glassworks.stages.settings import RobustnessSettings
from glassworks.tracking import contract as C

log = logging.getLogger("glassworks.robustness")


def robustness(tracker: Any, task: Task, settings: RobustnessSettings, model_run_id: str | None = None,
               explanations_run_id: str | None = None) -> Any:
    """The task's probe (``Task.robustness``) of the model of ``model_run_id``, guided by the
    attribution table of ``explanations_run_id`` (both default to ``tracker.run_id``, which gets
    the results: the run itself inside ``pipeline.run``, a derived child run later)."""
    loaded = task.load_model(model_run_id or tracker.run_id, tracker.uri)
    # the entry point checked it exists
    table = pd.read_parquet(tracker.download(C.ATTRIBUTIONS, explanations_run_id or tracker.run_id))
    out_dir = scratch_dir("robustness")
    result = task.robustness(loaded, table, settings, out_dir)
    tracker.log_metrics(C.prefixed(C.ROBUSTNESS_PREFIX, {k: v for k, v in result.metrics.items() if np.isfinite(v)}))
    tracker.log_artifacts(out_dir, C.ROBUSTNESS_DIR)
    log.info("robustness results logged to %s", tracker.artifact_uri(C.ROBUSTNESS_DIR))
    return result
