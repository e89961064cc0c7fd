"""Store doctor: python -m pipeline.doctor [--dry-run] [--tracking-uri URI] [--store-dir mlruns]

A run whose process died by SIGKILL or power loss stays RUNNING forever (nothing was left to
end it). The doctor lists such runs and marks them KILLED (``--dry-run`` only lists), checks
that the store's schema is current, and lists artifact folders that belong to no run
(``--clean-orphans`` deletes them; with ``--dry-run`` it says what it would delete).
A derived run (``pipeline.explain|robustness run_id=...``) killed that way is marked KILLED like
any other, and the doctor prints how to make it again; its parent is never touched.
A run counts as abandoned when it is RUNNING and no metric, param or tag was written for
``--stale-minutes`` (default 10), so a pipeline that is alive right now is left alone.
It also deletes the ``glassworks-<pid>-*`` temp folders of commands that were killed (the next
command would delete them too), including those of versions from before commands locked their folder, when no
process with that pid runs (``--dry-run`` only lists them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from glassworks.render.numbers import fmt_bytes
from glassworks.scratch import remove_abandoned
from glassworks.tracking.doctor import (abandoned_runs, folder_bytes, mark_abandoned, orphaned_artifact_dirs,
                                        remove_orphans, started_by)
from glassworks.tracking import contract as C
from glassworks.tracking.runs import is_derived, rerun_command
from glassworks.tracking.store import check_reachable, open_client, resolve_tracking_uri
from pipeline import imports_done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.doctor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="only list; change nothing")
    parser.add_argument("--store-dir", default=os.path.join(os.environ.get("GLASSWORKS_ROOT", "."), "mlruns"))
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--stale-minutes", type=float, default=10.0)
    parser.add_argument("--clean-orphans", action="store_true",
                        help="delete artifact folders that belong to no run (preview with --dry-run)")
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
            mark_abandoned(client, run)
        print(f"{verb} KILLED: {run.info.run_id} ({run.info.run_name}), RUNNING since "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run.info.start_time / 1000))}")
        command = C.resume_command(started_by(run), run.info.run_id)
        if is_derived(run):
            print(f"  a derived run of {run.data.tags.get(C.TAG_DERIVED_FROM)} (left unchanged); make it again with: "
                  f"{rerun_command(run)}")
        elif command:
            print(f"  continue it with: {command}")
    if not stale:
        print("no abandoned RUNNING runs")

    orphans = orphaned_artifact_dirs(client, store_dir)
    for path in orphans:
        print(f"orphaned artifacts (no such run): {path} ({fmt_bytes(folder_bytes(path))})")
    if not orphans:
        print("no orphaned artifact folders")
    elif args.clean_orphans and args.dry_run:
        print(f"would delete {len(orphans)} orphaned folder(s); run again without --dry-run to delete them")
    elif args.clean_orphans:
        freed = remove_orphans(store_dir, orphans)
        print(f"deleted {len(orphans)} orphaned folder(s), {fmt_bytes(freed)} freed")
    else:
        print("delete them with: python -m pipeline.doctor --clean-orphans  (preview: add --dry-run)")

    scratch = {path: folder_bytes(path) for path in remove_abandoned(legacy=True, dry_run=True)}
    for path, size in scratch.items():
        print(f"temp folder of a killed command: {path} ({fmt_bytes(size)})")
    if not scratch:
        print("no temp folders of killed commands")
    elif args.dry_run:
        print(f"would delete {len(scratch)} temp folder(s)")
    else:
        removed = remove_abandoned(legacy=True)
        print(f"deleted {len(removed)} temp folder(s), {fmt_bytes(sum(scratch.get(p, 0) for p in removed))} freed")
    return 0


if __name__ == "__main__":
    imports_done()
    sys.exit(main())
