"""Sweeps in MLflow: one parent run per sweep, one nested child run per job, a summary at the end.

Jobs may run in this process, in joblib worker processes or on other machines (submitit), so
nothing here relies on shared memory. The parent's identity travels as a small JSON file in the
sweep directory (:class:`SweepInfo`, also named by the ``GLASSWORKS_SWEEP_FILE`` environment
variable); every job leaves a :class:`JobRecord` next to it, which is how a job that failed
before it had a run (bad config) still counts; the summary is read back from the tracking store,
so it is the same for every launcher.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from glassworks.report.figures import sweep_plots
from glassworks.tracking import contract as C
from glassworks.tracking.logged_model import link_registered_version, run_model_id, run_model_location
from glassworks.tracking.objective import MODES, pick_best
from glassworks.tracking.store import with_retry
from glassworks.tracking.tracker import metric_name

log = logging.getLogger(__name__)

SWEEP_ENV = "GLASSWORKS_SWEEP_FILE"
INFO_FILE = "glassworks_sweep.json"
JOBS_DIR = "glassworks_jobs"
PARENT_TAG = C.TAG_PARENT_RUN
SWEEP_TAG = C.TAG_SWEEP_ID
JOB_TAG = C.TAG_SWEEP_JOB
ROLE_TAG = C.TAG_SWEEP_ROLE
MAX_RUN_NAME = 120
# Metrics that go into the parent as best/<name> and lead the summary table.
_HEADLINE = re.compile(r"^(test|val)/(acc|f1|loss)$"
                       r"|^explain/[^/]+/(comprehensiveness|sufficiency|rationale_auprc)$")


@dataclass
class SweepInfo:
    """What a job needs to know about the sweep it belongs to (written once, read by every job)."""

    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    name: str
    sweep_dir: str
    swept_keys: list[str] = field(default_factory=list)

    def save(self) -> Path:
        path = Path(self.sweep_dir) / INFO_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2))
        tmp.replace(path)  # atomic: a job never reads half a file
        return path

    @classmethod
    def load(cls, path: str | Path) -> SweepInfo:
        return cls(**json.loads(Path(path).read_text()))

    @classmethod
    def find(cls, sweep_dir: str | Path | None) -> SweepInfo | None:
        """The sweep of the current job: the file the environment names (set by the process that
        launched the jobs, inherited by in-process and joblib jobs), else the one in ``sweep_dir``
        (remote jobs on a shared file system)."""
        candidates = [os.environ.get(SWEEP_ENV)]
        if sweep_dir:
            candidates.append(str(Path(sweep_dir) / INFO_FILE))
        for candidate in candidates:
            if candidate and Path(candidate).is_file():
                info = cls.load(candidate)
                if sweep_dir is None or Path(info.sweep_dir).resolve() == Path(sweep_dir).resolve():
                    return info
        return None

    def child_run_name(self, job_num: int, overrides: Sequence[str]) -> str:
        return child_run_name(self.name, job_num, overrides, self.swept_keys)

    def child_tags(self, job_num: int) -> dict[str, str]:
        return {PARENT_TAG: self.parent_run_id, SWEEP_TAG: self.parent_run_id,
                JOB_TAG: str(job_num), ROLE_TAG: "child", C.TAG_SWEEP_NAME: self.name}

    def job_runs(self, client: Any, job_num: int, unfinished: bool = False) -> list[Run]:
        """The runs job ``job_num`` of this sweep opened (`unfinished`: those not FINISHED), newest
        first: one, unless the job was started again (a requeued job continues its unfinished run
        instead)."""
        status = " and attributes.status != 'FINISHED'" if unfinished else ""
        return client.search_runs(
            [self.experiment_id], order_by=["attributes.start_time DESC"],
            filter_string=f"tags.`{SWEEP_TAG}` = '{self.parent_run_id}' and tags.`{JOB_TAG}` = '{job_num}' "
                          f"and tags.`{ROLE_TAG}` = 'child'{status}")

    # -- job records -----------------------------------------------------------------------

    def write_record(self, record: JobRecord) -> None:
        folder = Path(self.sweep_dir) / JOBS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{record.job_num}.json.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(record), indent=2))
        tmp.replace(folder / f"{record.job_num}.json")

    def records(self) -> list[JobRecord]:
        folder = Path(self.sweep_dir) / JOBS_DIR
        if not folder.is_dir():
            return []
        return sorted((JobRecord(**json.loads(p.read_text())) for p in folder.glob("*.json")),
                      key=lambda r: r.job_num)


@dataclass
class JobRecord:
    """How one job ended, as Hydra saw it (written by the job's own process)."""

    job_num: int
    overrides: list[str]
    status: str  # "COMPLETED" | "FAILED"
    error: str | None = None
    return_value: float | None = None


def split_override(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def child_run_name(sweep_name: str, job_num: int, overrides: Sequence[str],
                   swept_keys: Sequence[str] = (), max_length: int = MAX_RUN_NAME) -> str:
    """``<sweep>-<job>-<swept overrides>``: readable in the runs table and unique in the sweep.

    Only the swept keys are named (the fixed overrides are the same for every job and live in the
    parent); characters outside ``[A-Za-z0-9_.,=+-]`` become ``_``.
    """
    chosen = [o for o in overrides if split_override(o)[0] in swept_keys] if swept_keys else list(overrides)
    tail = ",".join(f"{key}={_short(value)}" for key, value in map(split_override, chosen))
    name = f"{sweep_name}-{job_num}" + (f"-{tail}" if tail else "")
    name = re.sub(r"[^A-Za-z0-9_.,=+\-]", "_", name)
    if len(name) > max_length:
        name = name[: max_length - 3] + "..."
    return name


def _short(value: str) -> str:
    """Sampled floats (0.000587194737873281) read better in a name as 0.0005872."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if len(value) > 8 and not value.isdigit() else value


# -- the summary ---------------------------------------------------------------------------


@dataclass
class SweepSummary:
    table: pd.DataFrame  # one row per job
    n_jobs: int
    n_failed: int
    best_run_id: str | None
    best_run_name: str | None
    best_value: float | None
    best_metrics: dict[str, float]
    failures: list[str]
    registered_model: str | None = None  # "<name>/<version>" when the best child's model was registered

    @property
    def outcome(self) -> str:
        """``4 jobs, 0 failed``; ``2 jobs, 1 failed, 1 killed``: the jobs that did not finish, by status."""
        ended = self.table["status"][self.table["status"] != "FINISHED"].value_counts() if self.n_failed else {}
        counts = [f"{count} {status.lower()}" for status, count in sorted(dict(ended).items())]
        return f"{self.n_jobs} job{'' if self.n_jobs == 1 else 's'}, " + (", ".join(counts) or "0 failed")


def child_runs(client: MlflowClient, experiment_ids: Sequence[str], parent_run_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = with_retry(lambda: client.search_runs(
            list(experiment_ids),
            filter_string=f"tags.`{SWEEP_TAG}` = '{parent_run_id}' and tags.`{ROLE_TAG}` = 'child'",
            max_results=1000, page_token=token), "searching sweep runs")
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def summarize(client: MlflowClient, info: SweepInfo, records: Sequence[JobRecord],
              optimized_metric: str, mode: str) -> SweepSummary:
    """Join the job records with the child runs (by job number) into one row per job."""
    runs = {}
    for run in child_runs(client, [info.experiment_id], info.parent_run_id):
        runs[int(run.data.tags.get(JOB_TAG, -1))] = run
    by_job = {r.job_num: r for r in records}
    rows = []
    for num in sorted(set(runs) | set(by_job)):
        run, record = runs.get(num), by_job.get(num)
        overrides = record.overrides if record else (run.data.tags.get(C.TAG_OVERRIDES, "").split())
        swept = [o for o in overrides if split_override(o)[0] in info.swept_keys] or overrides
        if run is not None:
            status = run.info.status
        else:  # no run: bad input before one existed, or a job that tracks nothing
            status = "FINISHED" if record is not None and record.status == "COMPLETED" else "FAILED"
        if record is not None and record.status == "FAILED":
            status = "FAILED"
        error = (record.error if record else None) or (run.data.tags.get(C.TAG_ERROR) if run else None)
        if run is None and status == "FINISHED":
            error = "finished, but its run is not in the parent's store (logger.tracking_uri differs?)"
        row: dict[str, Any] = {
            "job": num,
            "run_id": run.info.run_id if run else "",
            "run_name": run.info.run_name if run else "",
            "status": status,
            "overrides": " ".join(swept),
            "error": error or "",
        }
        row.update({k: v for k, v in map(split_override, overrides) if k in info.swept_keys})
        if run is not None:
            row.update({k: v for k, v in run.data.metrics.items() if not k.startswith("system/")})
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        table = pd.DataFrame(columns=["job", "run_id", "run_name", "status", "overrides", "error"])
    table = table[_column_order(table, info.swept_keys)]

    failed = table[table["status"] != "FINISHED"]
    failures = [f"job {r.job} ({r.overrides}) {r.status}{': ' + r.error if r.error else ''}"
                for r in failed.itertuples()]
    best_id = best_name = best_value = None
    best_metrics: dict[str, float] = {}
    metric = metric_name(optimized_metric)
    if metric in table.columns:
        index = pick_best(zip(table.index, table["status"], table[metric], strict=True), mode)
        if index is not None:
            best = table.loc[index]
            best_id, best_name, best_value = best["run_id"], best["run_name"], float(best[metric])
            best_metrics = {k: float(best[k]) for k in table.columns
                            if (k == metric or _HEADLINE.match(k)) and _finite(best[k])}
    return SweepSummary(table=table, n_jobs=len(table), n_failed=len(failed), best_run_id=best_id,
                        best_run_name=best_name, best_value=best_value, best_metrics=best_metrics,
                        failures=failures)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _column_order(table: pd.DataFrame, swept_keys: Sequence[str]) -> list[str]:
    ident = ["job", "run_id", "run_name", "status", "overrides", "error"]
    params = [k for k in swept_keys if k in table.columns and k not in ident]
    metrics = [k for k in table.columns if k not in ident and k not in params]
    headline = sorted(k for k in metrics if _HEADLINE.match(k))
    return ident + params + headline + sorted(k for k in metrics if k not in headline)


# -- the parent run ------------------------------------------------------------------------


class SweepParent:
    """The parent run's lifecycle: :meth:`open` before the jobs, :meth:`close` after them.

    ``tracker`` is an :class:`~glassworks.tracking.tracker.MLflowTracker` (any object with its
    start/log/end methods); every write goes through its retries on a locked store.
    """

    def __init__(self, tracker: Any, sweep_dir: str | Path, name: str, optimized_metric: str,
                 mode: str = "max", register_model_as: str | None = None,
                 swept_keys: Sequence[str] = ()):
        if mode not in MODES:
            raise ValueError(f"optimized_metric_mode must be one of {MODES}, got {mode!r}")
        self.tracker = tracker
        self.sweep_dir = Path(sweep_dir).resolve()
        self.name = name
        self.optimized_metric = optimized_metric
        self.mode = mode
        self.register_model_as = register_model_as or None
        self.swept_keys = list(swept_keys)
        self.info: SweepInfo | None = None
        self.started = time.perf_counter()
        self.closed = False

    def open(self, tags: Mapping[str, str], params: Mapping[str, Any], config_yaml: str,
             overrides: Sequence[str]) -> SweepInfo:
        """Create the store, the experiment and the parent run once, before any job starts (so
        parallel jobs never race to create the schema), and publish the :class:`SweepInfo`."""
        tracker = self.tracker
        began = time.perf_counter()
        run_id = tracker.start(self.name, {**tags, ROLE_TAG: "parent"})
        tracker.set_tags({SWEEP_TAG: run_id, C.TAG_SWEEP_DIR: str(self.sweep_dir),
                          C.TAG_SWEEP_OPTIMIZED_METRIC: self.optimized_metric,
                          C.TAG_SWEEP_MODE: self.mode})
        tracker.log_params(params)
        tracker.log_text(config_yaml, C.CONFIG)
        tracker.log_text("\n".join(overrides) + "\n", C.CONFIG_OVERRIDES)
        self.info = SweepInfo(parent_run_id=run_id, experiment_id=str(tracker.experiment_id),
                              tracking_uri=tracker.uri, name=self.name, sweep_dir=str(self.sweep_dir),
                              swept_keys=self.swept_keys)
        self.info.save()
        # What the sweep machinery costs, next to the jobs' own time (bench/bench_sweeps.py).
        tracker.log_metrics({"sweep/open_s": time.perf_counter() - began})
        return self.info

    def close(self, aborted: bool = False, interrupted: bool = False,
              before_end: Callable[[str, str], None] | None = None) -> SweepSummary:
        """Summarise the children into the parent and end it: FINISHED only when every job
        finished; FAILED otherwise (KILLED on an interrupt). ``before_end(parent run id, status)``
        runs once the summary is in the parent, before it ends with that status (the sweep report:
        the sweep's own command writes it, no later one). Idempotent."""
        assert self.info is not None, "close() before open()"
        self.closed = True
        tracker = self.tracker
        try:
            summary = self._summarize(aborted, interrupted)
        except BaseException as error:
            tracker.end("KILLED" if interrupted else "FAILED", error, "sweep summary")
            raise
        if interrupted or (aborted and "KILLED" in set(summary.table["status"])):
            status = "KILLED"
        elif summary.n_failed or aborted:
            status = "FAILED"
        else:
            status = "FINISHED"
        if status != "FINISHED":
            tracker.set_tags({C.TAG_ERROR: _failure_text(summary, aborted)[:5000]})
        if before_end is not None:
            try:
                before_end(self.info.parent_run_id, status)
            except BaseException as error:  # Ctrl-C while it runs: the parent still ends
                tracker.end("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED", error, "sweep report")
                raise
        tracker.end(status)
        return summary

    def _summarize(self, aborted: bool, interrupted: bool) -> SweepSummary:
        tracker, info = self.tracker, self.info
        began = time.perf_counter()
        self._end_orphans("KILLED" if interrupted or aborted else "FAILED")
        summary = summarize(tracker.client, info, info.records(), self.optimized_metric, self.mode)
        metrics = {"sweep/n_jobs": summary.n_jobs, "sweep/n_failed": summary.n_failed,
                   "sweep/n_finished": summary.n_jobs - summary.n_failed,
                   "sweep/wall_s": time.perf_counter() - self.started}
        metrics.update({f"best/{k}": v for k, v in summary.best_metrics.items()})
        tracker.log_metrics(metrics)
        tags = {C.TAG_SWEEP_N_JOBS: summary.n_jobs, C.TAG_SWEEP_N_FAILED: summary.n_failed}
        if summary.best_run_id:
            tags.update({C.TAG_SWEEP_BEST_RUN_ID: summary.best_run_id,
                         C.TAG_SWEEP_BEST_RUN_NAME: summary.best_run_name,
                         C.TAG_SWEEP_BEST_VALUE: summary.best_value})
        if summary.failures:
            tags[C.TAG_SWEEP_FAILURES] = "\n".join(summary.failures)
        if aborted and not summary.n_failed:
            tags[C.TAG_SWEEP_ABORTED] = "true"
        registered = self._register(summary)
        if registered:
            tags[C.TAG_SWEEP_REGISTERED_MODEL] = registered
            summary.registered_model = registered
        tags[C.TAG_NOTE] = self._note(summary, registered)
        tracker.set_tags(tags)

        with tempfile.TemporaryDirectory(prefix="glassworks-sweep-") as tmp:
            out = Path(tmp)
            summary.table.to_csv(out / "summary.csv", index=False)
            # The same figures as the sweep report, from their one owner (report/figures.py).
            plots = sweep_plots(summary.table, self.swept_keys, metric_name(self.optimized_metric),
                                summary.best_run_id)
            plots_dir = out / C.relative_to(C.SWEEP_PLOTS_DIR, C.SWEEP_DIR)
            plots_dir.mkdir()
            for name, png in plots.items():
                (plots_dir / name).write_bytes(png)
            for name in ("multirun.yaml", "optimization_results.yaml"):
                if (self.sweep_dir / name).is_file():
                    (out / name).write_bytes((self.sweep_dir / name).read_bytes())
            tracker.log_artifacts(out, C.SWEEP_DIR)
        tracker.log_table(summary.table, C.SWEEP_SUMMARY)
        tracker.log_metrics({"sweep/summary_s": time.perf_counter() - began})
        return summary

    def _end_orphans(self, status: str) -> None:
        """No job is running any more when the parent closes: a child still RUNNING lost its
        process (killed worker, interrupt between stages) and must not stay RUNNING."""
        client, info = self.tracker.client, self.info
        for run in child_runs(client, [info.experiment_id], info.parent_run_id):
            if run.info.status == "RUNNING":
                log.warning("child run %s was still RUNNING at the end of the sweep: marked %s",
                            run.info.run_id, status)
                error = "the job's process ended without ending its run (killed or interrupted)"
                with_retry(lambda: client.set_tag(run.info.run_id, C.TAG_ERROR, error), "tagging run")
                with_retry(lambda: client.set_terminated(run.info.run_id, status), "ending orphaned run")

    def _register(self, summary: SweepSummary) -> str | None:
        if not self.register_model_as or not summary.best_run_id:
            return None
        try:
            version = register_model(self.tracker.uri, summary.best_run_id, self.register_model_as, {
                C.TAG_MODEL_SWEEP_ID: self.info.parent_run_id,
                C.TAG_MODEL_OPTIMIZED_METRIC: self.optimized_metric,
                C.TAG_MODEL_BEST_VALUE: summary.best_value,
            })
        except Exception as error:  # noqa: BLE001 - a registry problem must not lose the summary
            log.warning("could not register the best model as %r: %s", self.register_model_as, error)
            return None
        return f"{self.register_model_as}/{version}"

    def _note(self, summary: SweepSummary, registered: str | None) -> str:
        lines = [f"**Sweep {self.name}**: {summary.outcome}."]
        if summary.best_run_id:
            lines.append(f"Best by `{self.optimized_metric}` ({self.mode}): run "
                         f"`{summary.best_run_name}` ({summary.best_run_id}) = {summary.best_value:.4g}.")
        if registered:
            lines.append(f"Registered as `models:/{registered}` (`models:/{self.register_model_as}/latest`).")
        lines += [f"- {f}" for f in summary.failures]
        lines.append("Table: artifact `sweep/summary.csv`; plots: `sweep/plots/`.")
        return "\n\n".join(lines)


def _failure_text(summary: SweepSummary, aborted: bool) -> str:
    head = f"{summary.n_failed} of {summary.n_jobs} jobs did not finish"
    if aborted and not summary.n_failed:
        head = f"the sweep ended before all jobs reported ({summary.n_jobs} did)"
    return "\n".join([head, *summary.failures])


def register_model(tracking_uri: str, run_id: str, name: str, tags: Mapping[str, Any]) -> str:
    """Register the run's LoggedModel under ``name`` (as ``mlflow.register_model`` would, through an
    explicit client rather than the process-wide tracking URI): ``models:/<name>/latest`` is then
    the sweep's winner. Returns the new version."""
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def ensure_registered() -> None:
        try:
            client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    with_retry(ensure_registered, "registering model")
    # The run's LoggedModel (the version links to it in the UI), given by its artifact location:
    # the sqlite registry resolves a models:/<model_id> source through the process-wide tracking
    # URI, not this client's. A run logged before LoggedModels registers its model/ folder.
    model_id = run_model_id(client, run_id)
    source = run_model_location(client, run_id)
    version = with_retry(lambda: client.create_model_version(
        name, source, run_id=run_id, tags={k: str(v) for k, v in tags.items()}, model_id=model_id),
        "registering model")
    if model_id is not None:
        with_retry(lambda: link_registered_version(client, model_id, name, str(version.version)),
                   "linking the registered version to the logged model")
    return str(version.version)
