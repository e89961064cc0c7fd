"""Everything a report shows, read from MLflow: the run record and its artifacts.

A report is built from what the tracking store holds and nothing else, so a report built today
and one built from the same run next year show the same numbers.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.utils.file_utils import get_local_path_or_none
from glassworks.scratch import scratch_dir

from glassworks.tracking import contract as C
from glassworks.tracking.derived import (DERIVED_STAGES, DerivedSource, consistent_holders, derived_line, derived_runs,
                                         rerun_command)

log = logging.getLogger(__name__)

# Metrics whose full history is drawn as learning curves ("lr-*" is matched by prefix).
CURVE_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc", "val/f1", "val/perplexity", "val/answer_acc")


@dataclass
class DatasetRef:
    name: str
    context: str  # train | validation | test
    digest: str
    source_type: str
    source: str
    profile: str


@dataclass
class RunRecord:
    run_id: str
    name: str
    experiment_id: str
    experiment_name: str
    status: str
    start_ms: int | None
    end_ms: int | None
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]  # latest value of every metric
    histories: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # (step, value)
    datasets: list[DatasetRef] = field(default_factory=list)
    artifacts: "ArtifactReader | None" = None
    derived: "DerivedInfo | None" = None          # set when this run is later work on another run
    derived_runs: list["DerivedRun"] = field(default_factory=list)  # later work on this run

    @property
    def task(self) -> str:
        return self.tags.get(C.TAG_TASK, "run")

    def overrides(self) -> list[str]:
        """The command line's overrides the run logged (``config/overrides.txt``), one a line."""
        text = self.artifacts.text(C.CONFIG_OVERRIDES) if self.artifacts else None
        return [line for line in (text or "").splitlines() if line.strip()]

    @property
    def model_run_id(self) -> str:
        """The run whose model, data and training config this record shows."""
        return self.derived.root_id if self.derived else self.run_id


@dataclass
class DerivedInfo:
    """What makes a derived run's report different: whose training context it shows, which
    stage it re-ran with which settings, and where each stage's results come from."""

    parent_id: str
    root_id: str
    stage: str
    settings: dict[str, str]           # the settings that differ from the parent's
    command: str
    rerun: str                         # how to make it again
    sources: dict[str, str | None]     # artifact folder -> the run its results come from (None: left out)


@dataclass
class DerivedRun:
    """One row of a run's "Derived runs" table."""

    run_id: str
    name: str
    experiment_id: str
    parent_id: str
    stage: str
    status: str
    settings: dict[str, str]
    metrics: dict[str, float]
    url: str = ""                      # its page in the MLflow UI (the report stage knows the store)


class ArtifactReader:
    """Reads a run's artifacts: in place when the store keeps them on this machine's disk,
    otherwise downloaded on demand into one temp folder (removed by :meth:`close`). Paths that
    :meth:`local` returns are for reading only.

    ``routes`` maps a top-level artifact folder to the run it is read from (a derived run's
    report reads ``explanations/`` from the run that made them and everything else from the
    trained run; None: the folder reads as absent)."""

    def __init__(self, client: MlflowClient, run_id: str, routes: dict[str, str | None] | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.routes = dict(routes or {})
        self._dir = scratch_dir("report")
        self._listing: dict[tuple[str | None, str], set[str]] = {}
        self._local: dict[str, Path] = {}
        self._roots: dict[str, Path | None] = {}

    def _run_of(self, path: str) -> str | None:
        return self.routes.get(path.split("/", 1)[0], self.run_id)

    def _local_root(self, run_id: str) -> Path | None:
        """The run's artifact folder when the store keeps artifacts on this machine's disk (a
        ``file:`` or plain path): read in place, one ``get_run`` per run. Each ``list_artifacts``
        and ``download_artifacts`` call loads the run again (~30 ms on sqlite), and a report makes
        ~20 of them. None for a remote or proxied store (``mlflow-artifacts:``, s3, ...)."""
        if run_id not in self._roots:
            try:
                local = get_local_path_or_none(self.client.get_run(run_id).info.artifact_uri)
            except Exception:  # noqa: BLE001 - an unreachable store: the client path says so, or reads absent
                local = None
            self._roots[run_id] = Path(local) if local is not None and Path(local).is_dir() else None
        return self._roots[run_id]

    def exists(self, path: str) -> bool:
        run_id = self._run_of(path)
        if run_id is None:
            return False
        root = self._local_root(run_id)
        if root is not None:
            return (root / path).exists()
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if (run_id, parent) not in self._listing:
            try:
                self._listing[run_id, parent] = {a.path for a in self.client.list_artifacts(run_id, parent or None)}
            except Exception:  # noqa: BLE001 - a missing folder or an unreachable store reads as absent
                self._listing[run_id, parent] = set()
        return path in self._listing[run_id, parent]

    def local(self, path: str) -> Path | None:
        if not self.exists(path):
            return None
        run_id = self._run_of(path)
        root = self._local_root(run_id)
        if root is not None:
            return root / path
        if path not in self._local:
            # One folder per artifact: MLflow decides the layout under the destination.
            dest = Path(tempfile.mkdtemp(dir=self._dir))
            self._local[path] = Path(self.client.download_artifacts(run_id, path, str(dest)))
        return self._local[path]

    def bytes(self, path: str) -> bytes | None:
        local = self.local(path)
        return local.read_bytes() if local is not None and local.is_file() else None

    def text(self, path: str) -> str | None:
        data = self.bytes(path)
        return None if data is None else data.decode("utf-8")

    def json(self, path: str) -> Any:
        text = self.text(path)
        return None if text is None else json.loads(text)

    def parquet(self, path: str) -> pd.DataFrame | None:
        data = self.bytes(path)
        return None if data is None else pd.read_parquet(io.BytesIO(data))

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def load_run(client: MlflowClient, run_id: str) -> RunRecord:
    """The run's params, tags, latest metrics, curve histories, dataset inputs, an artifact reader
    and the runs derived from it. A derived run is shown with its trained root's context (params,
    tags, curves, data, model and config artifacts) and its own line's stage results."""
    run = client.get_run(run_id)
    source = derived_line(client, run)
    if not source.line:
        record = _record(client, run)
    else:
        record = _derived_record(client, source)
    record.derived_runs = [_derived_row(r) for r in derived_runs(client, run)]
    return record


def _record(client: MlflowClient, run: Any) -> RunRecord:
    run_id = run.info.run_id
    experiment = client.get_experiment(run.info.experiment_id)
    histories = {}
    for key in run.data.metrics:
        if key in CURVE_METRICS or key.startswith("lr-"):
            points = client.get_metric_history(run_id, key)
            # Sorted by step, then by time: a value re-logged at the same step wins.
            histories[key] = [(int(m.step), float(m.value)) for m in sorted(points, key=lambda m: (m.step, m.timestamp))]
    datasets = []
    for item in run.inputs.dataset_inputs if run.inputs else []:
        context = next((t.value for t in item.tags if t.key == C.TAG_DATASET_CONTEXT), "")
        d = item.dataset
        datasets.append(DatasetRef(name=d.name, context=context, digest=d.digest, source_type=d.source_type,
                                   source=d.source, profile=d.profile or ""))
    return RunRecord(
        run_id=run.info.run_id, name=run.info.run_name or run.info.run_id, experiment_id=run.info.experiment_id,
        experiment_name=experiment.name if experiment else "", status=run.info.status,
        start_ms=run.info.start_time, end_ms=run.info.end_time, params=dict(run.data.params),
        tags=dict(run.data.tags), metrics=dict(run.data.metrics), histories=histories, datasets=datasets,
        artifacts=ArtifactReader(client, run_id),
    )  # fmt: skip


def _derived_record(client: MlflowClient, source: DerivedSource) -> RunRecord:
    """The record of a derived run: the root's training context, the line's stage results."""
    run = source.run
    record = _record(client, source.root)
    record.artifacts.close()
    sources = consistent_holders(source)
    by_id = {r.info.run_id: r for r in [*source.line, source.root]}
    metrics = dict(record.metrics)
    for stage, folder in DERIVED_STAGES.items():  # each stage's metrics from the run its results come from
        metrics = {k: v for k, v in metrics.items() if not (k.startswith(f"{stage}/") or k == C.stage_time_key(stage))}
        holder = sources[folder]
        if holder is not None:
            metrics.update({k: v for k, v in by_id[holder].data.metrics.items()
                            if k.startswith(f"{stage}/") or k == C.stage_time_key(stage)})
    own = {k: v for k, v in run.data.tags.items() if k.startswith(C.TAG_ENV_PREFIX) or k in (
        C.TAG_DERIVED_FROM, C.TAG_DERIVED_ROOT, C.TAG_DERIVED_STAGE, C.TAG_PARENT_RUN)}
    tags = {k: v for k, v in record.tags.items() if k not in (C.TAG_SWEEP_ID, C.TAG_SWEEP_ROLE)}
    tags = {**{k: v for k, v in tags.items() if not k.startswith(C.TAG_ENV_PREFIX)}, **own}
    record.run_id, record.name, record.status = run.info.run_id, run.info.run_name or run.info.run_id, run.info.status
    record.start_ms, record.end_ms = run.info.start_time, run.info.end_time
    record.params, record.tags, record.metrics = source.effective_params(), tags, metrics
    record.artifacts = ArtifactReader(client, source.root_id, {**sources, C.REPORT_DIR: run.info.run_id})
    record.derived = DerivedInfo(
        parent_id=run.data.tags[C.TAG_DERIVED_FROM], root_id=source.root_id,
        stage=run.data.tags.get(C.TAG_DERIVED_STAGE, "?"), settings=dict(run.data.params),
        command=run.data.tags.get(C.TAG_COMMAND, "–"), rerun=rerun_command(run), sources=sources)
    return record


def _derived_row(run: Any) -> DerivedRun:
    return DerivedRun(run_id=run.info.run_id, name=run.info.run_name or run.info.run_id,
                      experiment_id=run.info.experiment_id, parent_id=run.data.tags.get(C.TAG_DERIVED_FROM, ""),
                      stage=run.data.tags.get(C.TAG_DERIVED_STAGE, "?"), status=run.info.status,
                      settings=dict(run.data.params), metrics=dict(run.data.metrics))


def sweep_children(client: MlflowClient, sweep_id: str, max_results: int = 1000) -> list[Any]:
    """Child runs of a sweep parent (tag ``mlflow.parentRunId``), oldest first."""
    parent = client.get_run(sweep_id)
    return client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{C.TAG_PARENT_RUN}` = '{sweep_id}'",
        max_results=max_results, order_by=["attributes.start_time ASC"],
    )  # fmt: skip
