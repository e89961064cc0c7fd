"""The MLflow UI opens glassworks' experiments and links in its Model training view: experiments
carry ``mlflow.experimentKind=custom_model_development`` (an older one gets it, a kind the user
set is kept) and every printed link ends with ``?workflowType=machine_learning``.
tests/integration/test_mlflow_ui.py checks both in the real UI."""

from __future__ import annotations

from mlflow import MlflowClient

from glassworks.tracking import contract as C
from glassworks.tracking.store import ensure_experiment
from glassworks.tracking.tracker import MLflowTracker, ui_url


def test_experiments_are_tagged_model_training_and_a_users_kind_is_kept(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    fresh = ensure_experiment(client, "fresh", tmp_path)
    assert client.get_experiment(fresh).tags[C.TAG_EXPERIMENT_KIND] == C.EXPERIMENT_KIND
    older = client.create_experiment("older")  # made before glassworks tagged experiments
    assert ensure_experiment(client, "older", tmp_path) == older
    assert client.get_experiment(older).tags[C.TAG_EXPERIMENT_KIND] == C.EXPERIMENT_KIND
    chosen = client.create_experiment("chosen", tags={C.TAG_EXPERIMENT_KIND: "genai_development"})
    ensure_experiment(client, "chosen", tmp_path)
    assert client.get_experiment(chosen).tags[C.TAG_EXPERIMENT_KIND] == "genai_development"


def test_printed_links_open_the_model_training_view(tmp_path, monkeypatch):
    # an http tracker shortens MLflow's HTTP retries through the environment: undone after the test
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    local = MLflowTracker(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", system_metrics=False)
    local.experiment_id, local.run_id = "3", "abc"
    assert local.run_url() == "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    server = MLflowTracker(tracking_uri="http://tracking-host:5000/", system_metrics=False)
    server.experiment_id, server.run_id = "3", "abc"
    assert server.run_url() == "http://tracking-host:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    assert ui_url("http://h:1/", "experiments/7") == "http://h:1/#/experiments/7?workflowType=machine_learning"
