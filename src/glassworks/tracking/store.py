"""The local MLflow store: sqlite in ``mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts``.

MLflow 3 refuses the plain file store, and a sqlite experiment created without an explicit
artifact location puts artifacts under ``./mlartifacts`` of whatever the cwd is; both are
avoided here by deriving URI and artifact root from one store directory.

Several processes may open a fresh store at the same moment (two pipelines started together,
parallel sweep jobs). MLflow creates the sqlite schema and the default experiment without any
cross-process guard ("table ... already exists"), so opening a client and creating an experiment
happen under a file lock next to the database (:func:`store_lock`).
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from filelock import FileLock
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from glassworks.tracking import contract as C
from glassworks.tracking.metadata import redact

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


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI; None for servers and in-memory databases."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or len(tracking_uri) == len(prefix):
        return None
    return Path(tracking_uri[len(prefix):].split("?", 1)[0])


@contextmanager
def store_lock(tracking_uri: str, timeout_s: float = 120.0) -> Iterator[None]:
    """Exclusive across processes for a local sqlite store (``mlflow.db.lock``); a no-op for a
    tracking server, which serialises its own schema work."""
    database = sqlite_path(tracking_uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{database}.lock", timeout=timeout_s):
        yield


def open_client(tracking_uri: str) -> MlflowClient:
    """``MlflowClient(tracking_uri)``; its construction creates a fresh store's schema and default
    experiment, so it runs under :func:`store_lock`. A new local sqlite store starts as a copy of
    the pre-migrated template (:func:`copy_store_template`) instead of running MLflow's migrations."""
    with store_lock(tracking_uri):
        database = sqlite_path(tracking_uri)
        if database is not None and not database.exists():
            copy_store_template(database)
        return MlflowClient(tracking_uri=tracking_uri)


def store_cache_dir() -> Path:
    """Where the store template lives: ``$GLASSWORKS_CACHE_DIR``, else ``$XDG_CACHE_HOME/glassworks``
    (``~/.cache/glassworks``)."""
    explicit = os.environ.get("GLASSWORKS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "glassworks"


def _template_path() -> Path:
    import mlflow
    import sqlalchemy

    # The schema depends on MLflow's migrations (its version) and how SQLAlchemy writes them.
    return store_cache_dir() / f"mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}.db"


def ensure_store_template() -> Path:
    """The template: an empty store as MLflow itself creates it (every migration applied, the
    Default experiment and workspace rows), made once per MLflow version under a lock."""
    template = _template_path()
    if template.exists():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{template}.lock", timeout=120):
        if not template.exists():
            partial = template.with_name(f"{template.name}.{os.getpid()}.partial")
            partial.unlink(missing_ok=True)
            log.info("creating the MLflow store template %s (once per MLflow version)", template)
            MlflowClient(tracking_uri=f"sqlite:///{partial}").search_experiments(max_results=1)
            os.replace(partial, template)
    return template


def copy_store_template(database: Path) -> bool:
    """Create the store ``database`` as a copy of the template, with the Default experiment's
    artifacts under the store's own ``artifacts/0`` (MLflow would put them under ``./mlruns/0`` of
    the current directory). MLflow's schema migrations cost 2-5 s per new store; the copy a few ms.
    Returns False (MLflow then creates the store itself) when the cache cannot be written."""
    import shutil
    import sqlite3

    try:
        template = ensure_store_template()
    except (OSError, MlflowException) as error:
        log.debug("no MLflow store template (%s); MLflow creates the store", error)
        return False
    database.parent.mkdir(parents=True, exist_ok=True)
    partial = database.with_name(f"{database.name}.{os.getpid()}.partial")
    shutil.copyfile(template, partial)
    now = int(time.time() * 1000)
    default_artifacts = (database.parent.resolve() / "artifacts" / "0").as_uri()
    with sqlite3.connect(partial) as db:
        db.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                   "WHERE experiment_id = 0", (default_artifacts, now, now))
    os.replace(partial, database)
    return True


def is_locked(error: BaseException) -> bool:
    """sqlite lock contention between parallel jobs: worth a few quick retries."""
    text = str(error).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


# What requests/urllib3 (inside MLflow's REST client) say when a tracking server is down or
# restarting: refused or dropped connections, an answer cut off by a server that died while
# sending it ("Connection broken: IncompleteRead"), a proxy's 502/503/504.
_UNREACHABLE = ("connection refused", "max retries exceeded", "connection aborted", "connection reset",
                "connection broken", "remotedisconnected", "bad gateway", "service unavailable",
                "gateway timeout", "too many 502", "too many 503", "too many 504", "newconnectionerror")


def is_unreachable(error: BaseException) -> bool:
    """The tracking server did not answer (down, restarting): worth retrying until a deadline."""
    text = str(error).lower()
    return isinstance(error, ConnectionError) or any(word in text for word in _UNREACHABLE)


def is_transient(error: BaseException) -> bool:
    return is_locked(error) or is_unreachable(error)


def with_retry(fn: Callable[[], T], what: str, attempts: int = 8, timeout_s: float | None = None) -> T:
    """``fn()``, retried on a locked sqlite store (``attempts`` times) and, with ``timeout_s``, on
    an unreachable tracking server until ``timeout_s`` seconds have passed; then
    :class:`StoreUnreachable`. Every call retried here must be idempotent: metric points carry
    their own timestamps, so the store recognises a batch it already holds."""
    start = time.monotonic()
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - filtered below
            attempt += 1
            if timeout_s is not None and is_unreachable(error):
                waited = time.monotonic() - start
                if waited >= timeout_s:
                    raise StoreUnreachable(
                        f"the tracking server did not answer for {waited:.0f} s while {what} "
                        f"(logger.server_timeout_s={timeout_s:g}): {_short(error)}") from error
                delay = min(5.0, 0.5 * 2 ** min(attempt, 4), max(0.1, timeout_s - waited))
                log.warning("%s: tracking server unreachable, retrying in %.1fs (giving up after %g s)",
                            what, delay, timeout_s)
                time.sleep(delay)
                continue
            if attempt >= attempts or not is_locked(error):
                raise
            delay = min(2.0, 0.05 * 2 ** (attempt - 1)) * (1 + random.random())
            log.debug("%s hit a locked store, retrying in %.2fs", what, delay)
            time.sleep(delay)


def _short(error: BaseException) -> str:
    """The last line of MLflow's wrapped requests error: 'Connection refused', not the whole pool."""
    text = str(error)
    match = re.search(r"\[Errno \d+\] ([^'\")\]]+)", text) or re.search(r"(Connection \w+|RemoteDisconnected)", text)
    return match.group(1) if match else text[:300]


def ensure_experiment(client: MlflowClient, name: str, store_dir: str | Path) -> str:
    """Experiment id for ``name``, created once with its artifacts under ``store_dir/artifacts`` and
    tagged as a model-training experiment (the UI opens it in its Model training view)."""

    def get_or_create() -> str:
        existing = client.get_experiment_by_name(name)
        if existing is not None:
            if C.TAG_EXPERIMENT_KIND not in existing.tags:  # made before the tag existed
                client.set_experiment_tag(existing.experiment_id, C.TAG_EXPERIMENT_KIND, C.EXPERIMENT_KIND)
            return existing.experiment_id
        artifact_root = None
        if client.tracking_uri.startswith("sqlite:"):
            artifact_root = (Path(store_dir).resolve() / "artifacts").as_uri()
        try:
            return client.create_experiment(name, artifact_location=artifact_root,
                                            tags={C.TAG_EXPERIMENT_KIND: C.EXPERIMENT_KIND})
        except MlflowException:
            # Another process created it between our lookup and create.
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    with store_lock(client.tracking_uri):
        return with_retry(get_or_create, f"creating experiment {name!r}")


def short_http_retries() -> None:
    """MLflow's REST client retries one request for ~4 minutes by default; each request here gives
    up in seconds instead and :func:`with_retry` waits for the server up to its own deadline
    (``logger.server_timeout_s``). A value the user exported wins."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


class StoreUnreachable(RuntimeError):
    """The tracking server does not answer (MLflow itself would retry for minutes)."""


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, with the (redacted) URI in the message, when an http(s) tracking server is
    down. Credentials in the URI (``http://user:token@host``) go as basic auth, as MLflow sends them."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(tracking_uri)
    host = parts.netloc.rpartition("@")[2]
    url = urllib.parse.urlunsplit(parts._replace(netloc=host)).rstrip("/") + "/health"
    request = urllib.request.Request(url)  # noqa: S310 - user's own URI
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            response.read()
    except (urllib.error.URLError, OSError) as error:
        # "Connection refused", "timed out", "HTTP Error 502: Bad Gateway", not "<urlopen error [Errno 111] ...>"
        reason = error if isinstance(error, urllib.error.HTTPError) else getattr(error, "reason", error)
        detail = getattr(reason, "strerror", None) or str(reason)
        raise StoreUnreachable(f"tracking server {redact(tracking_uri)} is not reachable: {detail}") from error
