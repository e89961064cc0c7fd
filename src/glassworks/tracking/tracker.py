"""Run lifecycle in one place: create or reattach a run, log batched, end it honestly.

We own the run instead of using MLflow's fluent API because its exit handler marks a crashed
run FINISHED, and Lightning's ``MLFlowLogger`` is not the fluent active run.
"""

from __future__ import annotations

import json
import re
import logging
import posixpath
import shlex
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag

from glassworks.preemption import preempted, raise_keyboard_interrupt
from glassworks.tracking import contract as C
from glassworks.tracking.history import logged_points, unlogged
from glassworks.tracking.metadata import redact
from glassworks.tracking.params import flatten
from glassworks.tracking.store import (StoreUnreachable, check_reachable, ensure_experiment, open_client,
                                       resolve_tracking_uri, short_http_retries, with_retry)
from glassworks.validation import Validated
from glassworks.scratch import scratch_dir

log = logging.getLogger(__name__)
T = TypeVar("T")

# MLflow's per-request limits for log_batch.
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100
# The tag through which the MLflow UI knows which artifacts are tables.
_LOGGED_ARTIFACTS = C.TAG_LOGGED_ARTIFACTS


@dataclass
class MLflowTracker(Validated):
    """Tracking into MLflow (the default ``logger=mlflow``)."""

    store_dir: str = "mlruns"
    tracking_uri: str | None = None
    experiment_name: str = "glassworks"
    flush_every_n_steps: int = 50
    flush_min_interval_s: float = 5.0
    system_metrics: bool = True
    system_metrics_interval_s: float = 5.0
    log_model: bool = True
    log_checkpoints: bool = True
    # How long a job waits for an unreachable tracking server (down, restarting) before it
    # fails; metric points are kept and sent again meanwhile.
    server_timeout_s: float = 120.0

    enabled = True

    def validate(self) -> None:
        self.require(bool(self.experiment_name.strip()), "experiment_name", "must not be empty")
        self.require(self.flush_every_n_steps > 0, "flush_every_n_steps", "must be > 0")
        self.require(self.flush_min_interval_s >= 0, "flush_min_interval_s", "must be >= 0")
        self.require(self.system_metrics_interval_s > 0, "system_metrics_interval_s", "must be > 0")
        self.require(self.server_timeout_s > 0, "server_timeout_s", "must be > 0")
        self.uri = resolve_tracking_uri(self.tracking_uri, self.store_dir)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.task: str | None = None  # the run's entry point (TAG_TASK): how an interrupted run continues
        self._client: MlflowClient | None = None
        self._monitor: Any = None
        self._logged: set[tuple[str, int]] = set()
        if self.uri.startswith(("http://", "https://")):
            short_http_retries()

    def retry(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` (a call of this tracker's client), retried on a locked store and, up to
        ``server_timeout_s``, on an unreachable tracking server (see ``with_retry``)."""
        return with_retry(fn, what, timeout_s=self.server_timeout_s)

    # The client holds a sqlalchemy engine: rebuild it lazily after pickling (DDP spawn).
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        state["_monitor"] = None
        return state

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = open_client(self.uri)
        return self._client

    # -- lifecycle -------------------------------------------------------------------------

    def check(self) -> None:
        """Fail fast (before training) when the tracking server is down."""
        check_reachable(self.uri)

    def start(self, run_name: str | None, tags: Mapping[str, str], experiment_id: str | None = None) -> str:
        """Create a run in the tracker's experiment, or in ``experiment_id`` (a derived run lives
        next to its parent, whatever this command's ``logger.experiment_name``)."""
        self.experiment_id = experiment_id or ensure_experiment(self.client, self.experiment_name, self.store_dir)
        # Retried only on a locked store: a create whose answer was lost would make a second run.
        run = with_retry(
            # str(): the REST store (an `mlflow server`) rejects non-string tag values.
            lambda: self.client.create_run(self.experiment_id, run_name=run_name,
                                           tags={str(k): str(v) for k, v in tags.items()}),
            "creating run",
        )
        self.run_id = run.info.run_id
        self.task = tags.get(C.TAG_TASK)
        self._start_system_metrics()
        return self.run_id

    def attach(self, run_id: str, resume: bool = False) -> str:
        """Log into an existing run: a later stage, or (``resume``) a killed job continuing,
        which skips the metric points the run already holds and clears the kill's error tags."""
        run = self.retry(lambda: self.client.get_run(run_id), "reading run")
        self.run_id = run.info.run_id
        self.experiment_id = run.info.experiment_id
        self.task = run.data.tags.get(C.TAG_TASK)
        if resume:
            self._logged = self.retry(lambda: logged_points(self.client, run), "reading metrics")
            for key in (C.TAG_ERROR, C.TAG_FAILED_STAGE):
                if key in run.data.tags:
                    self.retry(lambda k=key: self.client.delete_tag(run_id, k), "clearing tags")
            resumes = int(run.data.tags.get(C.TAG_RESUMES, "0")) + 1
            self.set_tags({C.TAG_RESUMES: resumes,
                           f"{C.TAG_RESUME_PREFIX}{resumes}": f"was {run.info.status} at "
                           f"{time.strftime('%Y-%m-%d %H:%M:%S')}"})
        if run.info.status != "RUNNING":
            self.retry(lambda: self.client.update_run(run_id, status="RUNNING"), "reopening run")
        self._start_system_metrics(resume=True)
        return self.run_id

    def end(self, status: str, error: BaseException | None = None, stage: str | None = None) -> None:
        if self.run_id is None:
            return
        self._stop_system_metrics()
        if error is not None:
            message = f"{type(error).__name__}: {error}"[:5000]
            tags = {C.TAG_ERROR: message}
            if stage:
                tags[C.TAG_FAILED_STAGE] = stage
            self.set_tags(tags)
            self.log_text("".join(traceback.format_exception(error))[-100_000:], C.ERROR_TRACEBACK)
        self.retry(lambda: self.client.set_terminated(self.run_id, status=status), "ending run")

    @contextmanager
    def lifecycle(self, stage: str = "run") -> Iterator[MLflowTracker]:
        """FINISHED only on success; an exception -> FAILED (error and stage as tags);
        Ctrl-C, SIGTERM or a non-zero exit -> KILLED."""
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
        self.stage = stage
        try:
            yield self
        except (KeyboardInterrupt, SystemExit) as interrupt:
            code = getattr(interrupt, "code", 1)
            status = "FINISHED" if isinstance(interrupt, SystemExit) and code in (0, None) else "KILLED"
            # Lightning turns a KeyboardInterrupt into sys.exit(1): report the interrupt itself.
            cause = interrupt.__context__ if isinstance(interrupt.__context__, KeyboardInterrupt) else interrupt
            self._end_or_stay_running(status, None if status == "FINISHED" else cause, getattr(self, "stage", stage))
            if status == "KILLED":
                self._say_how_to_continue(cause)
            raise
        except StoreUnreachable as error:
            raise self._stays_running(error) from error
        except BaseException as error:
            self._end_or_stay_running("FAILED", error, getattr(self, "stage", stage))
            raise
        else:
            self._end_or_stay_running("FINISHED")
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _say_how_to_continue(self, cause: BaseException) -> None:
        """The last line of an interrupted job (Ctrl-C, SIGTERM, a preemption): the run is KILLED,
        and the command that continues it. A preempted job's requeue continues it by itself."""
        command = C.resume_command(self.task, str(self.run_id))
        stop = preempted(cause)
        if stop is not None:
            stop.resume_command = command
            return
        reason = ((str(cause) or "Ctrl-C") if isinstance(cause, KeyboardInterrupt)
                  else f"{type(cause).__name__}: {cause}")
        log.warning("run %s is KILLED (%s)%s", self.run_id, reason, f"; continue it with: {command}" if command else "")

    def _stays_running(self, error: StoreUnreachable) -> StoreUnreachable:
        """The store itself is gone: nothing more can be written there. The run stays RUNNING, with
        every point sent so far and its last resume checkpoint on this machine."""
        self._stop_system_metrics()
        return StoreUnreachable(f"{error}; run {self.run_id} stays RUNNING: once the server is back, "
                                f"continue it with resume={self.run_id}")

    def _end_or_stay_running(self, status: str, error: BaseException | None = None, stage: str | None = None) -> None:
        """``end``; when the store went away before the run could be ended (a server killed in the
        middle of an answer fails the stage first, then refuses the FAILED tags), the run stays
        RUNNING and the error says how to resume it."""
        try:
            self.end(status, error, stage)
        except StoreUnreachable as gone:
            raise self._stays_running(gone) from error or gone

    def _start_system_metrics(self, resume: bool = False) -> None:
        if not self.system_metrics:
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(
            self.run_id,
            sampling_interval=self.system_metrics_interval_s,
            resume_logging=resume,
            tracking_uri=self.uri,
        )
        self._monitor.start()

    def _stop_system_metrics(self) -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None

    # -- logging ---------------------------------------------------------------------------

    def log_params(self, config: Mapping[str, Any]) -> None:
        params = [Param(k, v) for k, v in flatten(config).items()]
        for i in range(0, len(params), _MAX_PARAMS):
            chunk = params[i : i + _MAX_PARAMS]
            self.retry(lambda: self.client.log_batch(self.run_id, params=chunk), "logging params")

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, str(v)[:5000]) for k, v in tags.items()]
        for i in range(0, len(items), _MAX_TAGS):
            chunk = items[i : i + _MAX_TAGS]
            self.retry(lambda: self.client.log_batch(self.run_id, tags=chunk), "logging tags")

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.log_metric_batch([Metric(metric_name(k), float(v), now, step) for k, v in metrics.items()])

    def log_metric_batch(self, metrics: list[Metric]) -> None:
        metrics = unlogged(metrics, self._logged)
        for i in range(0, len(metrics), _MAX_METRICS):
            chunk = metrics[i : i + _MAX_METRICS]
            self.retry(lambda: self.client.log_batch(self.run_id, metrics=chunk), "logging metrics")

    # Artifact calls read the run from the store (and log_table/log_inputs write to it), so
    # they retry on a store locked by parallel sweep jobs like every other write.
    def log_artifacts(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        self.retry(lambda: self.client.log_artifacts(self.run_id, str(local_dir), artifact_path),
                   "logging artifacts")

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self.retry(lambda: self.client.log_artifact(self.run_id, str(local_path), artifact_path),
                   "logging artifact")

    def log_text(self, text: str, artifact_file: str) -> None:
        self.retry(lambda: self.client.log_text(self.run_id, text, artifact_file), "logging text")

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self.log_text(json.dumps(data, indent=2, default=str), artifact_file)

    def log_table(self, frame: Any, artifact_file: str) -> None:
        """``MlflowClient.log_table`` (same file layout and tag, so the UI shows a table), made
        safe to retry: the client appends to an existing file, a retry would duplicate rows."""
        with tempfile.TemporaryDirectory(prefix="glassworks-table-") as tmp:
            local = Path(tmp) / Path(artifact_file).name
            if artifact_file.endswith(".parquet"):
                frame.to_parquet(local, index=False)
            else:
                frame.to_json(local, orient="split", index=False, date_format="iso")
            self.log_artifact(local, posixpath.dirname(artifact_file) or None)

        def tag() -> None:
            logged = json.loads(self.client.get_run(self.run_id).data.tags.get(_LOGGED_ARTIFACTS, "[]"))
            entry = {"path": artifact_file, "type": "table"}
            if entry not in logged:
                self.client.set_tag(self.run_id, _LOGGED_ARTIFACTS, json.dumps([*logged, entry]))

        self.retry(tag, "tagging table")

    def log_inputs(self, datasets: list[Any]) -> None:
        self.retry(lambda: self.client.log_inputs(self.run_id, datasets=datasets), "logging inputs")

    def download(self, artifact_path: str, run_id: str | None = None) -> Path:
        """An artifact of the tracker's run (or of ``run_id``: a derived run reads its parent's)."""
        target = scratch_dir("download")
        source = run_id or self.run_id
        return Path(self.retry(lambda: self.client.download_artifacts(source, artifact_path, str(target)),
                               "downloading artifact"))

    def artifact_uri(self, artifact_path: str = "") -> str:
        """Where an artifact of the run lives in the store (what a log line should point at,
        not the scratch folder it was written from)."""
        root = self.client.get_run(self.run_id).info.artifact_uri
        return redact(posixpath.join(root, artifact_path) if artifact_path else root)

    def lightning_logger(self) -> Any:
        from glassworks.tracking.lightning_logger import MLflowRunLogger

        return MLflowRunLogger(self.uri, self.run_id, self.flush_every_n_steps, self._logged,
                               server_timeout_s=self.server_timeout_s, flush_min_interval_s=self.flush_min_interval_s)

    @property
    def ui_command(self) -> str:
        if self.uri.startswith("sqlite:"):
            # quoted: a store under a folder with a space must survive a copy into a shell
            return f"mlflow ui --backend-store-uri {shlex.quote(self.uri)} --host 127.0.0.1 --port 5000"
        return f"open {self.uri}"

    def run_url(self, base: str = "http://127.0.0.1:5000") -> str:
        """The run's page in the MLflow UI, opened in the Model training view."""
        return run_ui_url(self.uri, self.experiment_id, self.run_id, base)


@dataclass
class NoTracker(Validated):
    """``logger=none``: train without tracking (the baseline of the tracking benchmark)."""

    enabled = False

    def validate(self) -> None:
        self.run_id = None
        self.experiment_id = None
        self.uri = None
        self.log_model = False
        self.log_checkpoints = False

    def start(self, run_name: str | None, tags: Mapping[str, str]) -> None:
        return None

    def check(self) -> None:
        return None

    @contextmanager
    def lifecycle(self, stage: str = "run") -> Iterator[NoTracker]:
        yield self

    def lightning_logger(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        # Every logging call is a no-op without a store.
        if name.startswith("log_") or name in ("set_tags", "end", "attach"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def ui_url(base: str, route: str) -> str:
    """A page of the MLflow UI (``experiments/<id>``, ``experiments/<id>/runs/<run_id>``) that opens
    in the Model training view, not in the GenAI view the UI may remember."""
    return f"{base.rstrip('/')}/#/{route}{C.UI_VIEW_QUERY}"


def metric_name(key: str) -> str:
    """MLflow names allow only [A-Za-z0-9_-. :/]: ``flip_rate@5`` is logged as ``flip_rate_at_5``."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", key.replace("@", "_at_"))


def run_ui_url(uri: str, experiment_id: str | None, run_id: str | None, base: str = "http://127.0.0.1:5000") -> str:
    """A run's page in the MLflow UI (Model training view): on the tracking server itself, or on
    ``mlflow ui`` (``base``) started over a local store as ``MLflowTracker.ui_command`` says."""
    if not uri.startswith("sqlite:"):
        base = uri.rstrip("/")
    return redact(ui_url(base, f"experiments/{experiment_id}/runs/{run_id}"))


def run_status(client: MlflowClient, run_id: str) -> str:
    return client.get_run(run_id).info.status


TERMINAL = {RunStatus.to_string(s) for s in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)}
