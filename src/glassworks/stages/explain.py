"""The explain stage: explain a seeded sample of the run's test split with every configured
method, score the explanations, log ``explain/<method>/<metric>`` and ``explanations/``.

It always starts from the run's logged model (``Task.load_model``), so "explain right after
training" (``pipeline.run``) and "explain an old run" (``pipeline.explain run_id=...``) are the
same code path.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from glassworks.scratch import scratch_dir
from glassworks.tasks.base import Task
from glassworks.stages.settings import ExplainSettings
from glassworks.tracking import contract as C

log = logging.getLogger("glassworks.explain")


def explain(tracker: Any, task: Task, datamodule: Any, settings: ExplainSettings,
            model_run_id: str | None = None) -> Any:
    """Explain the model of ``model_run_id`` (default: ``tracker.run_id``) with the task's
    explanations (``Task.explain``) and log everything into ``tracker.run_id`` (the run itself
    inside ``pipeline.run``, a derived child run later); returns the task's result (``.metrics``,
    ``.table``)."""
    model_run_id = model_run_id or tracker.run_id
    loaded = task.load_model(model_run_id, tracker.uri)
    out_dir = scratch_dir("explain")
    context = {"run_id": model_run_id, "data": datamodule.name, "seed": settings.seed,
               "methods": ", ".join(settings.methods)}
    result = task.explain(loaded, datamodule, settings, out_dir, context)

    finite = C.prefixed(C.EXPLAIN_PREFIX, {k: v for k, v in result.metrics.items() if np.isfinite(v)})
    tracker.log_metrics(finite)
    tracker.log_artifacts(out_dir, C.EXPLANATIONS_DIR)
    log.info("explanations logged to %s", tracker.artifact_uri(C.EXPLANATIONS_DIR))
    tracker.log_table(result.table, C.ATTRIBUTIONS_TABLE)
    tracker.log_text(settings.config_yaml, C.EXPLAIN_CONFIG)
    return result
