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
from glassworks.scratch import scratch_dir

from glassworks.tracking import contract as C

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

    @property
    def task(self) -> str:
        return self.tags.get(C.TAG_TASK, "run")


class ArtifactReader:
    """Downloads a run's artifacts on demand into one temp folder (removed by :meth:`close`)."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self._dir = scratch_dir("report")
        self._listing: dict[str, set[str]] = {}
        self._local: dict[str, Path] = {}

    def exists(self, path: str) -> bool:
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent not in self._listing:
            try:
                self._listing[parent] = {a.path for a in self.client.list_artifacts(self.run_id, parent or None)}
            except Exception:  # noqa: BLE001 - a missing folder or an unreachable store reads as absent
                self._listing[parent] = set()
        return path in self._listing[parent]

    def local(self, path: str) -> Path | None:
        if not self.exists(path):
            return None
        if path not in self._local:
            # One folder per artifact: MLflow decides the layout under the destination.
            dest = Path(tempfile.mkdtemp(dir=self._dir))
            self._local[path] = Path(self.client.download_artifacts(self.run_id, path, str(dest)))
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
    """The run's params, tags, latest metrics, curve histories, dataset inputs and an artifact reader."""
    run = client.get_run(run_id)
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


def sweep_children(client: MlflowClient, sweep_id: str, max_results: int = 1000) -> list[Any]:
    """Child runs of a sweep parent (tag ``mlflow.parentRunId``), oldest first."""
    parent = client.get_run(sweep_id)
    return client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{C.TAG_PARENT_RUN}` = '{sweep_id}'",
        max_results=max_results, order_by=["attributes.start_time ASC"],
    )  # fmt: skip
