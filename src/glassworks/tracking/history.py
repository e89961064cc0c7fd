"""Which (metric, step) points a run already holds, so that a resumed run logs each step once.

A job killed after its last checkpoint has logged steps that the resumed job trains again. MLflow
cannot delete single points of a metric history, so the resumed job skips the points the run
already has: on CPU they are the same values (resumption is exact), and the history continues
without a repeated or missing step.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlflow import MlflowClient
from mlflow.entities import Metric, Run


def logged_points(client: MlflowClient, run: Run) -> set[tuple[str, int]]:
    run_id = run.info.run_id
    return {(key, int(point.step)) for key in run.data.metrics
            for point in client.get_metric_history(run_id, key)}


def unlogged(metrics: Iterable[Metric], logged: set[tuple[str, int]]) -> list[Metric]:
    if not logged:  # a run that was not resumed: every flush passes through here
        return list(metrics)
    return [m for m in metrics if (m.key, int(m.step)) not in logged]
