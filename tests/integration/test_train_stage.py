"""The train stage with real components: Hydra compose, Lightning training, a sqlite MLflow store."""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from glassworks.testing import MEANING_TEXTS, assert_columns_follow_label_order, assert_positive_scores_higher
from glassworks.tracking.logged_model import run_model_id
from glassworks.tracking.pyfunc import load_run_model
from pipeline.stage import build_job, open_run
from pipeline.train import train
from tests.conftest import compose_config, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real tiny run shared by the contract checks below."""
    tmp = tmp_path_factory.mktemp("train")
    cfg = compose_config(tmp, ["trainer.max_epochs=3", "data.source.n_train=4000", "seed=3"])
    job = build_job(cfg)
    run_id = open_run(job)
    with job.tracker.lifecycle("train"):
        result = train(job)
    return {"cfg": cfg, "job": job, "run_id": run_id, "result": result, "uri": job.tracker.uri}


def test_run_reaches_high_accuracy_and_finishes(trained):
    client = MlflowClient(trained["uri"])
    run = client.get_run(trained["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["val/acc"] >= 0.9
    assert run.data.metrics["test/acc"] >= 0.9
    assert "test/f1" in run.data.metrics


def test_run_contract_params_tags_metrics(trained):
    client = MlflowClient(trained["uri"])
    run = client.get_run(trained["run_id"])
    params, tags = run.data.params, run.data.tags
    assert params["model.d_model"] == "64"
    assert params["optimizer.lr"] == "0.003"
    assert params["seed"] == "3"
    assert params["data.label_names"] == "negative,positive"
    assert tags["glassworks.seed"] == "3"
    assert len(tags["glassworks.data.digest"]) >= 16
    assert "glassworks.overrides" in tags
    assert "glassworks.env.torch" in tags
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) >= 5, "learning curve is logged step by step"
    assert history[-1].value < history[0].value
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 3
    assert run.data.metrics["train/tokens_per_sec"] > 0
    assert any(k.startswith("lr") for k in run.data.metrics), run.data.metrics.keys()


def test_run_contract_artifacts_and_inputs(trained):
    client = MlflowClient(trained["uri"])
    run_id = trained["run_id"]
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"config", "tokenizer", "checkpoints", "data"} <= top
    # the model is the run's LoggedModel (its own artifact location), with the test metrics linked
    model = client.get_logged_model(run_model_id(client, run_id))
    assert model.source_run_id == run_id and {m.key for m in model.metrics} >= {"test/acc", "test/f1"}
    assert "model" not in top
    config_files = {a.path for a in client.list_artifacts(run_id, "config")}
    assert "config/config.yaml" in config_files and "config/overrides.txt" in config_files
    checkpoints = {Path(a.path).name for a in client.list_artifacts(run_id, "checkpoints")}
    assert "last.ckpt" in checkpoints and len(checkpoints) >= 2
    # On disk last.ckpt links to the best (the same state, written once); the artifact is a copy.
    best = Path(trained["result"].best_checkpoint)
    last = best.parent / "last.ckpt"
    assert last.is_symlink() and last.resolve() == best.resolve()
    run = client.get_run(run_id)
    contexts = {t.value for d in run.inputs.dataset_inputs for t in d.tags}
    assert contexts == {"train", "validation", "test"}
    assert all(d.dataset.digest for d in run.inputs.dataset_inputs)


def test_checkpoint_loads_weights_only(trained, tmp_path):
    client = MlflowClient(trained["uri"])
    path = client.download_artifacts(trained["run_id"], "checkpoints/last.ckpt", str(tmp_path))
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert "state_dict" in checkpoint and checkpoint["hyper_parameters"]["model_spec"]


def test_pyfunc_predicts_probabilities_from_raw_text(trained):
    mlflow.set_tracking_uri(trained["uri"])
    model = mlflow.pyfunc.load_model(f"runs:/{trained['run_id']}/model")
    texts = ["a truly great and wonderful film", "a dull and awful plot", "", *MEANING_TEXTS]
    out = model.predict(pd.DataFrame({"text": texts}))
    assert all(math.isclose(s, 1.0, rel_tol=1e-5) for s in out.sum(axis=1))
    # each column is predict_proba's column of that label, and positive means positive
    reference = load_run_model(trained["run_id"], trained["uri"]).predict_proba(texts)
    assert_columns_follow_label_order(out, reference, ["negative", "positive"])
    assert_positive_scores_higher(lambda t: model.predict(pd.DataFrame({"text": t})))


def test_failing_run_ends_failed(make_cfg, monkeypatch):
    cfg = make_cfg("trainer.max_epochs=1")
    job = build_job(cfg)
    run_id = open_run(job)

    def explode(*args, **kwargs):
        raise RuntimeError("boom in training")

    monkeypatch.setattr("pytorch_lightning.Trainer.fit", explode)
    with pytest.raises(RuntimeError), job.tracker.lifecycle("train"):
        train(job)
    run = MlflowClient(job.tracker.uri).get_run(run_id)
    assert run.info.status == "FAILED"
    assert "boom in training" in run.data.tags["glassworks.error"]
    assert run.data.tags["glassworks.failed_stage"] == "train"


def test_same_seed_gives_identical_metrics(tmp_path):
    def once(sub: str) -> dict[str, float]:
        cfg = compose_config(tmp_path / sub, ["logger=none", "seed=11"])
        job = build_job(cfg)
        return train(job).metrics

    first, second = once("a"), once("b")
    for key in ("test/acc", "test/f1", "val/loss"):
        assert first[key] == second[key], key


def test_early_stopping_says_when_it_ended_the_fit(make_cfg, caplog):
    # val/acc can never improve by 1.0: the second validation exhausts a patience of 1.
    cfg_overrides = ("logger=none", "test=false", "trainer.max_epochs=4", "data.source.n_train=200",
                     "callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=1.0")
    cfg = make_cfg(*cfg_overrides)
    with caplog.at_level("INFO", logger="glassworks.train"):
        result = train(build_job(cfg))
    assert result.train_steps == 2 * math.ceil(200 / 32)  # two epochs of four
    lines = [r.getMessage() for r in caplog.records if r.name == "glassworks.train" and "early stopping" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("early stopping (callbacks.early_stopping) ended the fit after epoch 2 of "
                               "trainer.max_epochs=4: Monitored metric val/acc did not improve in the last 1 "
                               "records. Best score: ")
    assert "Signaling" not in lines[0]
    # Stopping on the last epoch ends nothing early: no line.
    caplog.clear()
    with caplog.at_level("INFO", logger="glassworks.train"):
        train(build_job(make_cfg(*[o for o in cfg_overrides if not o.startswith("trainer.max_epochs")],
                                 "trainer.max_epochs=2")))
    assert not [r for r in caplog.records if "early stopping" in r.getMessage()]


@pytest.mark.parametrize("limit", ["trainer.max_steps=3", "trainer.accumulate_grad_batches=2"])
def test_the_trainers_common_arguments_take_plain_overrides_and_a_fit_may_stop_mid_epoch(make_cfg, limit):
    # max_steps stops the fit in its first epoch, before any validation: early stopping checks when
    # a validation ends, so it never asks for a val/acc that does not exist yet.
    cfg = make_cfg("logger=none", "trainer.max_epochs=1", "data.source.n_train=200", limit)
    result = train(build_job(cfg))
    assert result.train_steps == (3 if "max_steps" in limit else math.ceil(math.ceil(200 / 32) / 2))
    assert "test/acc" in result.metrics


def test_fast_dev_run(make_cfg):
    cfg = make_cfg("debug=fast_dev_run", "logger=none")
    job = build_job(cfg)
    result = train(job)
    assert result.train_steps == 1  # one batch of train
    # test/acc is the shipped model's accuracy on exactly one test batch, macro-averaged over the
    # classes (torchmetrics' MulticlassAccuracy default: the mean of the per-class recalls)
    batch = next(iter(job.datamodule.test_dataloader()))
    module = result.module.eval()
    with torch.no_grad():
        predicted = module(batch["input_ids"], batch["attention_mask"]).logits.argmax(dim=-1)  # (B,)
    labels = batch["labels"]  # (B,)
    recalls = [((predicted == c) & (labels == c)).sum().item() / (labels == c).sum().item()
               for c in labels.unique().tolist()]
    assert result.metrics["test/acc"] == pytest.approx(sum(recalls) / len(recalls), abs=1e-6)
    assert math.isfinite(result.metrics["test/loss"]) and result.metrics["test/loss"] > 0


def test_ddp_cpu_trains_in_two_processes(make_cfg):
    cfg = make_cfg("trainer=ddp_cpu", "trainer.max_epochs=2", "data.source.n_train=2000",
                   "data.batch_size=16")
    job = build_job(cfg)
    run_id = open_run(job)
    with job.tracker.lifecycle("train"):
        result = train(job)
    assert result.metrics["test/acc"] > 0.6
    run = MlflowClient(job.tracker.uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.devices"] == "2"
    assert "val/acc" in run.data.metrics


def test_cli_prints_run_location_and_ui_command(tmp_path):
    out = run_cli("pipeline.train", "data.source.n_train=300", "data.source.n_validation=60",
                  "data.source.n_test=60", "trainer.max_epochs=1", "logger.system_metrics=false",
                  "callbacks.rich_progress_bar=null", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mlflow ui --backend-store-uri sqlite:///" in out.stdout
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    runs = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}").search_runs(
        [e.experiment_id for e in MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}").search_experiments()])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].info.run_id in out.stdout


def test_mlflow_models_serve_answers_with_probabilities(trained, tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The scoring server execs `uvicorn` from PATH: the venv's bin must be on it (as when activated).
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained["uri"],
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
           "TMPDIR": str(tmp_path)}  # MLflow's server leaves its model download behind when stopped
    mlflow_cli = [sys.executable, "-m", "mlflow"]
    server = subprocess.Popen(
        [*mlflow_cli, "models", "serve", "-m", f"runs:/{trained['run_id']}/model", "--env-manager",
         "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300  # a loaded 2-core machine measured more than 120 s
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.time() < deadline, "model server did not start"
                time.sleep(1)
        def served(texts: list[str]) -> dict:
            body = json.dumps({"dataframe_records": [{"text": t} for t in texts]}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
            return json.loads(urllib.request.urlopen(request, timeout=30).read())

        texts = ["a truly great film", *MEANING_TEXTS]
        answer = served(texts)
        row = answer["predictions"][0]
        assert math.isclose(row["negative"] + row["positive"], 1.0, rel_tol=1e-5)
        reference = load_run_model(trained["run_id"], trained["uri"]).predict_proba(texts)
        assert_columns_follow_label_order(answer, reference, ["negative", "positive"])
        assert_positive_scores_higher(served)
    finally:
        server.terminate()
        server.wait(timeout=30)
