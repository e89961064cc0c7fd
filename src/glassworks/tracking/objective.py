"""The sweep objective: which metric a job returns to the sweeper, and which child is best.

One owner for both questions: the sweep's parent run (:mod:`glassworks.tracking.sweep`), the
sweep report (:mod:`glassworks.report.sweep_report`) and the value an entry point returns to
Hydra's sweeper all go through :func:`objective_value` and :func:`pick_best`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from glassworks.tracking.tracker import metric_name

log = logging.getLogger("glassworks.sweep")
MODES = ("max", "min")
FINISHED = "FINISHED"
K = TypeVar("K")


def objective_value(optimized_metric: str, metrics: Mapping[str, float]) -> float | None:
    """``metrics[optimized_metric]`` under its MLflow name (``flip_rate@5`` finds
    ``flip_rate_at_5``); None, with a warning, when the job did not produce it."""
    key = metric_name(optimized_metric)
    value = {metric_name(k): v for k, v in metrics.items()}.get(key)
    if value is None:
        log.warning("optimized_metric=%s is not among this run's metrics (%s)", key,
                    ", ".join(sorted(metrics)[:20]))
    return None if value is None else float(value)


def pick_best(candidates: Iterable[tuple[K, str, Any]], mode: str) -> K | None:
    """The key of the best FINISHED candidate with a finite value; the first one on ties.

    ``candidates``: ``(key, run status, objective value)`` in the order a tie should favour
    (job number, run start).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    best: tuple[K, float] | None = None
    for key, status, value in candidates:
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if status != FINISHED or not math.isfinite(number):
            continue
        if best is None or (number > best[1] if mode == "max" else number < best[1]):
            best = (key, number)
    return None if best is None else best[0]
