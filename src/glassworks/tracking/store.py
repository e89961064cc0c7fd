"""The local MLflow store: sqlite in ``mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts``.

MLflow 3 refuses the plain file store, and a sqlite experiment created without an explicit
artifact location puts artifacts under ``./mlartifacts`` of whatever the cwd is; both are
avoided here by deriving URI and artifact root from one store directory.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)
T = TypeVar("T")


def local_tracking_uri(store_dir: str | Path) -> str:
    return f"sqlite:///{Path(store_dir).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(tracking_uri: str | None, store_dir: str | Path) -> str:
    """``tracking_uri`` wins (e.g. an ``http://`` server); else the local sqlite store."""
    if tracking_uri:
        return tracking_uri
    Path(store_dir).mkdir(parents=True, exist_ok=True)
    return local_tracking_uri(store_dir)


def is_transient(error: BaseException) -> bool:
    """sqlite lock contention between parallel jobs is worth retrying; nothing else is."""
    text = str(error).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def with_retry(fn: Callable[[], T], what: str, attempts: int = 8) -> T:
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - filtered by is_transient
            if attempt == attempts - 1 or not is_transient(error):
                raise
            delay = min(2.0, 0.05 * 2**attempt) * (1 + random.random())
            log.debug("%s hit a locked store, retrying in %.2fs", what, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def ensure_experiment(client: MlflowClient, name: str, store_dir: str | Path) -> str:
    """Experiment id for ``name``, created once with its artifacts under ``store_dir/artifacts``."""

    def get_or_create() -> str:
        existing = client.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        artifact_root = None
        if client.tracking_uri.startswith("sqlite:"):
            artifact_root = (Path(store_dir).resolve() / "artifacts").as_uri()
        try:
            return client.create_experiment(name, artifact_location=artifact_root)
        except MlflowException:
            # Another process created it between our lookup and create.
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    return with_retry(get_or_create, f"creating experiment {name!r}")


class StoreUnreachable(RuntimeError):
    """The tracking server does not answer (MLflow itself would retry for minutes)."""


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, with the URI in the message, when an http(s) tracking server is down."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - user's own URI
            response.read()
    except (urllib.error.URLError, OSError) as error:
        raise StoreUnreachable(f"tracking server {tracking_uri} is not reachable: {error}") from error
