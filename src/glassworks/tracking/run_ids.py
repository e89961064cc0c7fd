"""Run ids as users type them: any unique prefix of the 32-character id, as git takes commit ids.

Report folders, sweep tables and log lines show 8 characters; every ``run_id=`` (and ``sweep_id=``,
``resume=``, ``reproduce.against=``) accepts them.
"""

from __future__ import annotations

import re

from mlflow import MlflowClient
from mlflow.entities import ViewType

FULL_ID = re.compile(r"[0-9a-f]{32}")
MIN_PREFIX = 4  # as git: shorter prefixes match too much to be meant
_MAX_LISTED = 10


class RunIdError(ValueError):
    """No run, or more than one, matches the id a user gave; the message names the key."""


def resolve_run_id(client: MlflowClient, ref: str, key: str = "run_id", min_prefix: int = MIN_PREFIX) -> str:
    """The full id of the one run whose id starts with ``ref`` (every experiment, deleted runs too).

    A full 32-character id, or anything that is no hex prefix, is returned as given (whether it
    exists is the caller's question); a prefix shorter than `min_prefix` raises, a prefix that
    matches no run raises, and so does an ambiguous one, listing the candidates.
    """
    ref = str(ref).strip().lower()
    if FULL_ID.fullmatch(ref):
        return ref
    if not re.fullmatch(r"[0-9a-f]+", ref):
        return ref  # not a prefix of any MLflow id: the caller's lookup says "no such run"
    if len(ref) < min_prefix:
        raise RunIdError(f"{key}={ref}: give at least {min_prefix} characters of a run id (or all 32)")
    matches = [run for run in _all_runs(client) if run.info.run_id.startswith(ref)]
    if not matches:
        raise RunIdError(f"{key}={ref}: no such run (no run id starts with {ref})")
    if len(matches) > 1:
        listed = "; ".join(f"{r.info.run_id} ({r.info.run_name}, {r.info.status})" for r in matches[:_MAX_LISTED])
        more = f" and {len(matches) - _MAX_LISTED} more" if len(matches) > _MAX_LISTED else ""
        raise RunIdError(f"{key}={ref} is ambiguous, {len(matches)} runs match: {listed}{more}; give more characters")
    return matches[0].info.run_id


def _all_runs(client: MlflowClient):
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    token = None
    while experiments:
        page = client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            break
