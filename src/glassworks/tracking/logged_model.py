"""The run's model as an MLflow 3 LoggedModel: what the UI lists on the run page and in the
experiment's Models tab, with its own params, linked metrics and a Register button.

``mlflow.pyfunc.log_model(name=...)`` does these steps through the fluent API: it needs an
active fluent run (whose exit handler would mark a crashed run FINISHED) and the process-wide
tracking URI (which would leak into every later job of an in-process sweep). Here the same
steps go through the tracker's explicit client: create the LoggedModel in the run's experiment,
link it to the run as an output, save the pyfunc folder with the model's id and artifact
location in its ``MLmodel``, upload it to the model's own artifact location, mark it READY and
link the run's ``test/*`` metrics (with the test split as their dataset) to it.

``runs:/<run_id>/model`` resolves to the LoggedModel named ``model`` whose source run is
``run_id`` (and, for a run logged before LoggedModels, to its ``model/`` artifact folder);
``models:/<model_id>`` names the LoggedModel itself.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from glassworks.scratch import scratch_dir
from glassworks.tracking import contract as C
from glassworks.tracking.dataset import split_dataset_name, stored_digest
from glassworks.tracking.store import with_retry
from glassworks.validation import UserError

log = logging.getLogger(__name__)

# The run metrics a LoggedModel carries: what the model scored on the held-out split.
LINKED_METRIC_PREFIX = "test/"
MLMODEL = "MLmodel"


def run_model_uri(run_id: str) -> str:
    """``runs:/<run_id>/model``: the run's LoggedModel (or a legacy run's ``model/`` folder), as
    users load or serve it (``mlflow.pyfunc.load_model``, ``mlflow models serve -m``)."""
    return f"runs:/{run_id}/{C.MODEL_NAME}"


def logged_model_uri(model_id: str) -> str:
    return f"models:/{model_id}"


def log_run_model(tracker: Any, save: Callable[[Path, Model], None], model_type: str) -> str:
    """Log the model ``save(path, mlflow_model)`` writes (an ``mlflow.pyfunc.save_model`` folder
    carrying ``mlflow_model``) as the run's LoggedModel ``model``; returns its model id. Every call
    waits for an unreachable tracking server up to ``logger.server_timeout_s``, as the tracker's own
    writes do (a connection dropped while the model was being created may leave a second, never
    finalized LoggedModel beside the one the run links)."""
    client, run_id, retry = tracker.client, tracker.run_id, tracker.retry
    run = retry(lambda: client.get_run(run_id), "reading run")
    # Like log_model: the model carries the run's params (the flattened config) on its own page.
    model = retry(lambda: client.create_logged_model(
        run.info.experiment_id, name=C.MODEL_NAME, source_run_id=run_id, params=dict(run.data.params),
        model_type=model_type), "creating logged model")
    retry(lambda: client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)]),
               "linking logged model")
    tmp = scratch_dir("logged-model")
    try:
        local = tmp / C.MODEL_NAME
        save(local, Model(artifact_path=model.artifact_location, run_id=run_id, model_id=model.model_id,
                          model_uuid=model.model_id))
        retry(lambda: client.log_model_artifacts(model.model_id, str(local)), "logging model artifacts")
    except BaseException:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    retry(lambda: client.finalize_logged_model(model.model_id, LoggedModelStatus.READY), "finalizing logged model")
    link_test_metrics(tracker, model.model_id)
    log.info("logged model %s (%s)", logged_model_uri(model.model_id), run_model_uri(run_id))
    return model.model_id


def link_test_metrics(tracker: Any, model_id: str) -> None:
    """The run's latest ``test/*`` values again, tagged with the model and the test split's
    dataset: the LoggedModel's page and the runs table's model column show them."""
    client, run_id, retry = tracker.client, tracker.run_id, tracker.retry
    run = retry(lambda: client.get_run(run_id), "reading run")
    name, digest = run.data.tags.get(C.TAG_DATA_NAME), run.data.tags.get(C.TAG_DATA_DIGEST)
    dataset = {"dataset_name": split_dataset_name(name, "test"), "dataset_digest": stored_digest(digest)} \
        if name and digest else {}
    metrics = []
    for key in [k for k in run.data.metrics if k.startswith(LINKED_METRIC_PREFIX)]:
        last = max(retry(lambda k=key: client.get_metric_history(run_id, k), "reading metrics"),
                   key=lambda m: (m.step, m.timestamp))
        metrics.append(Metric(key, last.value, last.timestamp, last.step, model_id=model_id, run_id=run_id,
                              **dataset))
    if metrics:
        retry(lambda: client.log_batch(run_id, metrics=metrics), "linking metrics to the model")


def run_model_location(client: MlflowClient, run_id: str) -> str | None:
    """Where the files of the run's model live: its LoggedModel's artifact location, or a legacy
    run's ``model/`` folder; None when the run has neither.

    Resolved here with the given client: MLflow 3.17 resolves ``runs:/<id>/model`` to the
    LoggedModel through the process-wide tracking URI even when a ``tracking_uri`` is passed."""
    model_id = run_model_id(client, run_id)
    if model_id is not None:
        return with_retry(lambda: client.get_logged_model(model_id), "reading logged model").artifact_location
    legacy = with_retry(lambda: client.list_artifacts(run_id, C.MODEL_NAME), "listing artifacts")
    if any(PurePosixPath(f.path).name == MLMODEL for f in legacy):
        run = with_retry(lambda: client.get_run(run_id), "reading run")
        return f"{run.info.artifact_uri}/{C.MODEL_NAME}"
    return None


def has_run_model(tracking_uri: str, run_id: str) -> bool:
    """Whether the run holds a model (its LoggedModel or a legacy ``model/`` folder)."""
    try:
        return run_model_location(MlflowClient(tracking_uri), run_id) is not None
    except MlflowException:  # an unknown run reads as one without a model
        return False


def download_run_model(tracking_uri: str, run_id: str) -> Path:
    """The run's model folder (``MLmodel`` and its files) in a scratch folder."""
    location = run_model_location(MlflowClient(tracking_uri), run_id)
    if location is None:
        raise UserError(f"run_id={run_id}: has no logged model {run_model_uri(run_id)} "
                        "(trained with logger.log_model=false?)")
    local = str(scratch_dir("run-model"))
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=location, tracking_uri=tracking_uri,
                                                    dst_path=local))


def link_registered_version(client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """Record a registered version on its LoggedModel, as ``mlflow.register_model`` does: the UI
    shows the model's registered versions from this tag (the registry keeps no model id)."""
    model = client.get_logged_model(model_id)
    versions = json.loads(model.tags.get(C.TAG_LOGGED_MODEL_VERSIONS, "[]"))
    entry = {"name": name, "version": version}
    if entry not in versions:
        client.set_logged_model_tags(model_id, {C.TAG_LOGGED_MODEL_VERSIONS: json.dumps([*versions, entry])})


def run_model_id(client: MlflowClient, run_id: str) -> str | None:
    """The id of the run's READY LoggedModel ``model``, the newest if a resumed run logged it
    again; None for a run logged before LoggedModels (or with ``logger.log_model=false``)."""
    run = with_retry(lambda: client.get_run(run_id), "reading run")
    outputs = run.outputs.model_outputs if run.outputs else []
    models = [with_retry(lambda o=o: client.get_logged_model(o.model_id), "reading logged model") for o in outputs]
    ready = [m for m in models if m.name == C.MODEL_NAME and m.status == LoggedModelStatus.READY]
    return max(ready, key=lambda m: m.creation_timestamp).model_id if ready else None
