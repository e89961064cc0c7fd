"""Re-running a run from its logged config: what differs in the code, where the new run writes,
how it is found again. The entry point is ``pipeline.reproduce``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from glassworks.tracking import contract as C
from glassworks.tracking.metadata import git_state

log = logging.getLogger("glassworks.reproduce")
# pipeline entry points whose runs can be re-run from their logged config
REPRODUCIBLE = {"run": "pipeline.run", "train": "pipeline.train"}


def code_state_warnings(tags: Mapping[str, str], repo_dir: str | Path) -> list[str]:
    """Warnings when the code that runs now may not be the code that ran then."""
    now = git_state(repo_dir)
    warnings = []
    then_commit = tags.get(C.TAG_GIT_COMMIT)
    if then_commit and now.get(C.TAG_GIT_COMMIT) and then_commit != now[C.TAG_GIT_COMMIT]:
        warnings.append(f"the run was made at commit {then_commit[:12]}, this checkout is at "
                        f"{now[C.TAG_GIT_COMMIT][:12]} (git checkout {then_commit})")
    if tags.get(C.TAG_GIT_DIRTY) == "true":
        warnings.append("the run was made from a dirty tree: its uncommitted changes are not in git")
    if now.get(C.TAG_GIT_DIRTY) == "true":
        warnings.append("this checkout has uncommitted changes")
    for warning in warnings:
        log.warning("reproduce: %s", warning)
    return warnings


def rebase_locations(logged: dict[str, Any], new_paths: Mapping[str, Any]) -> dict[str, Any]:
    """The logged config with every absolute ``paths.*`` location (and every string under one)
    moved to this invocation's: the new run must not write into the original's folders."""
    old_paths = logged.get("paths") or {}
    moves = sorted(((str(old_paths[k]), str(new_paths[k])) for k in new_paths
                    if k in old_paths and old_paths[k] and Path(str(old_paths[k])).is_absolute()),
                   key=lambda m: -len(m[0]))
    rebased = _rebase(logged, moves)
    rebased["paths"] = dict(new_paths)
    return rebased


def _rebase(node: Any, moves: list[tuple[str, str]]) -> Any:
    """Replace old location prefixes in every string of a plain config tree."""
    if isinstance(node, dict):
        return {k: _rebase(v, moves) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v, moves) for v in node]
    if isinstance(node, str):
        for old, new in moves:
            if node == old or node.startswith(old.rstrip("/") + "/"):
                return new + node[len(old):]
    return node


def logged_threads(tags: Mapping[str, str]) -> int | None:
    """The torch thread count the run was made with (results can depend on it)."""
    threads = tags.get(f"{C.TAG_ENV_PREFIX}torch.threads")
    return int(threads) if threads and threads.isdigit() else None
