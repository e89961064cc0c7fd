"""Store doctor: python -m pipeline.doctor [--dry-run] [--tracking-uri URI] [--store-dir mlruns]

A run whose process died by SIGKILL or power loss stays RUNNING forever (nothing was left to
end it). The doctor lists such runs and marks them KILLED (``--dry-run`` only lists), checks
that the store's schema is current, and lists artifact folders that belong to no run.
A run counts as abandoned when it is RUNNING and no metric, param or tag was written for
``--stale-minutes`` (default 10), so a pipeline that is alive right now is left alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import ViewType

from glassworks.tracking.store import check_reachable, open_client, resolve_tracking_uri


def last_activity_ms(client: MlflowClient, run) -> int:
    """Newest timestamp the run wrote (metrics carry one; the start time otherwise)."""
    newest = run.info.start_time or 0
    for key in run.data.metrics:
        history = client.get_metric_history(run.info.run_id, key)
        if history:
            newest = max(newest, max(m.timestamp for m in history))
    return newest


def abandoned_runs(client: MlflowClient, stale_minutes: float) -> list:
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    running = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'",
                                 run_view_type=ViewType.ALL, max_results=10_000)
    cutoff = (time.time() - stale_minutes * 60) * 1000
    return [r for r in running if last_activity_ms(client, r) < cutoff]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.doctor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="only list; change nothing")
    parser.add_argument("--store-dir", default=os.path.join(os.environ.get("GLASSWORKS_ROOT", "."), "mlruns"))
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--stale-minutes", type=float, default=10.0)
    args = parser.parse_args(argv)

    store_dir = Path(args.store_dir)
    uri = resolve_tracking_uri(args.tracking_uri, store_dir)
    try:
        check_reachable(uri)
        client = open_client(uri)
        client.search_experiments(max_results=1)
    except Exception as error:  # noqa: BLE001 - report any store problem as one line
        print(f"error: cannot open the tracking store {uri}: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    print(f"store {uri}: schema ok")

    stale = abandoned_runs(client, args.stale_minutes)
    verb = "would mark" if args.dry_run else "marked"
    for run in stale:
        if not args.dry_run:
            client.set_tag(run.info.run_id, "glassworks.error", "abandoned: process ended without closing the run")
            client.set_terminated(run.info.run_id, "KILLED")
        print(f"{verb} KILLED: {run.info.run_id} ({run.info.run_name}), RUNNING since "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run.info.start_time / 1000))}")
        task = run.data.tags.get("glassworks.task")
        if task in ("run", "train"):
            print(f"  continue it with: python -m pipeline.{task} resume={run.info.run_id}")
    if not stale:
        print("no abandoned RUNNING runs")

    orphans = orphaned_artifact_dirs(client, store_dir)
    for path in orphans:
        print(f"orphaned artifacts (no such run): {path}")
    if not orphans:
        print("no orphaned artifact folders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
