"""The sweep objective: which metric a job returns to the sweeper, and which child is best.

One owner for both questions: the sweep's parent run (:mod:`glassworks.tracking.sweep`), the
sweep report (:mod:`glassworks.report.sweep_report`) and the value an entry point returns to
Hydra's sweeper all go through :func:`objective_value` and :func:`pick_best`.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from glassworks.tracking.tracker import metric_name

log = logging.getLogger("glassworks.sweep")
MODES = ("max", "min")
FINISHED = "FINISHED"
K = TypeVar("K")


def objective_value(optimized_metric: str, metrics: Mapping[str, float], warn: bool = True) -> float | None:
    """``metrics[optimized_metric]`` under its MLflow name (``flip_rate@5`` finds
    ``flip_rate_at_5``); None when the job did not produce it, with a warning (``warn``) that
    names the closest metrics it did log."""
    key = metric_name(optimized_metric)
    named = {metric_name(k): v for k, v in metrics.items()}
    value = named.get(key)
    if value is None and warn:
        log.warning("optimized_metric=%s is not among this run's %d metrics%s", key, len(named), _nearest(key, named))
    return None if value is None else float(value)


def _nearest(key: str, names: Iterable[str]) -> str:
    """'; closest: a, b' (the names most like `key`), and what is missing when no name shares
    its namespace ('val/' when validation never ran)."""
    names = sorted(names)
    close = difflib.get_close_matches(key, names, n=5, cutoff=0.5)
    namespace = key.split("/")[0] + "/" if "/" in key else ""
    missing = f"; none under {namespace} was logged" if namespace and not any(
        n.startswith(namespace) for n in names) else ""
    return missing + (f"; closest: {', '.join(close)}" if close else "")


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
