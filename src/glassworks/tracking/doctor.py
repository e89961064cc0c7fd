"""What the store doctor looks for: runs whose process died without ending them, and artifact
folders that belong to no run (``python -m pipeline.doctor`` prints and fixes them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import ViewType

from glassworks.tracking import contract as C

ABANDONED = "abandoned: process ended without closing the run"


def last_activity_ms(client: MlflowClient, run: Any) -> int:
    """Newest timestamp the run wrote (metrics carry one; the start time otherwise)."""
    newest = run.info.start_time or 0
    for key in run.data.metrics:
        history = client.get_metric_history(run.info.run_id, key)
        if history:
            newest = max(newest, max(m.timestamp for m in history))
    return newest


def abandoned_runs(client: MlflowClient, stale_minutes: float) -> list[Any]:
    """RUNNING runs that wrote nothing for ``stale_minutes`` (a live pipeline is left alone)."""
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    running = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'",
                                 run_view_type=ViewType.ALL, max_results=10_000)
    cutoff = (time.time() - stale_minutes * 60) * 1000
    return [r for r in running if last_activity_ms(client, r) < cutoff]


def mark_abandoned(client: MlflowClient, run: Any) -> None:
    client.set_tag(run.info.run_id, C.TAG_ERROR, ABANDONED)
    client.set_terminated(run.info.run_id, "KILLED")


def started_by(run: Any) -> str | None:
    """The entry point that opened the run (``run``, ``train``, ...)."""
    return run.data.tags.get(C.TAG_TASK)


def orphaned_artifact_dirs(client: MlflowClient, store_dir: Path) -> list[Path]:
    root = store_dir / "artifacts"
    if not root.is_dir():
        return []
    orphans = []
    # Runs' artifacts live in <root>/<run_id>/ (one artifact root for the store); tolerate a
    # per-experiment level too, as stores created by other tools use <root>/<exp>/<run_id>/.
    candidates = [p for p in root.iterdir() if p.is_dir()]
    candidates += [q for p in candidates if not _is_run_id(p.name) for q in p.iterdir() if q.is_dir()]
    for run_dir in sorted(p for p in candidates if _is_run_id(p.name)):
        try:
            client.get_run(run_dir.name)
        except Exception:  # noqa: BLE001 - any lookup failure means no such run
            orphans.append(run_dir)
    return orphans


def _is_run_id(name: str) -> bool:
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)
