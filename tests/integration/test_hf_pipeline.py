"""Every stage through the Hugging Face path: model=hf on a tiny random BERT saved to a temp
folder (no download), one module-scoped pipeline.run, then stages on its run id."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

import pipeline.run
from glassworks.data.sources import SyntheticSource
from glassworks.testing.hf import tiny_bert_dir
from glassworks.tracking.logged_model import run_model_id
from glassworks.tracking.pyfunc import load_run_model
from pipeline.stage import UserError, build_job
from tests.conftest import compose_config, run_cli

pytestmark = pytest.mark.slow


def _hf_overrides(folder) -> list[str]:
    return [
        "model=hf", f"model.pretrained={folder}",
        "optimizer.lr=0.002",  # a random tiny BERT, not a pretrained one: needs a larger step
        "data.max_length=40",
        "explain.n_examples=4", "explain.shap.max_evals=64",
        "explain.n_heatmaps=1",  # one BERT attention grid drawn (each takes seconds), not three
        "explain.methods=[shap,raw_attention,rollout,flow,grad_attention,input_x_gradient]",
        "robustness.stability_examples=2", "robustness.n_stability=1", "robustness.attack.max_edits=2",
    ]


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hf")
    splits = SyntheticSource(n_train=400, n_validation=100, n_test=100).load().splits
    texts = [t for s in splits.values() for t in s["text"]]
    folder = tiny_bert_dir(tmp / "tiny-bert", texts, max_positions=48)
    cfg = compose_config(tmp, _hf_overrides(folder), config_name="run")
    pipeline.run.main(cfg)
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {"tmp": tmp, "uri": uri, "client": client, "run": run, "folder": folder}


def test_run_finishes_with_every_stage(hf_run):
    run = hf_run["run"]
    assert run.info.status == "FINISHED", run.data.tags.get("mlflow.note.content")
    metrics = run.data.metrics
    assert "test/acc" in metrics
    for method in ("shap", "raw_attention", "rollout", "flow", "grad_attention", "input_x_gradient"):
        assert f"explain/{method}/comprehensiveness" in metrics, method
        assert f"explain/{method}/word_rationale_auprc" in metrics, method
    assert any(k.startswith("robustness/") for k in metrics)
    assert run.data.params["model._target_"] == "glassworks.models.hf_encoder.HFEncoderConfig"


def test_model_artifact_is_safetensors_and_tokenizer_files(hf_run):
    client, run_id = hf_run["client"], hf_run["run"].info.run_id
    model_id = run_model_id(client, run_id)
    files = {a.path.rsplit("/", 1)[-1] for a in client.list_logged_model_artifacts(model_id, "artifacts/files/hf")}
    assert {"model.safetensors", "config.json"} <= files
    tok = {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run_id, "tokenizer")}
    assert {"tokenizer.json", "tokenizer_config.json", "tokenizer_meta.json"} <= tok
    every = []
    def walk(path):
        for a in client.list_logged_model_artifacts(model_id, path):
            walk(a.path) if a.is_dir else every.append(a.path)
    walk(None)
    assert not [p for p in every if p.endswith((".pt", ".bin"))]


def test_pyfunc_round_trip_raw_text_in_probabilities_out(hf_run):
    loaded = load_run_model(hf_run["run"].info.run_id, hf_run["uri"])
    probs = loaded.predict_proba(["the movie was great", "a dull and boring film"])
    assert probs.shape == (2, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    # The data's [MASK]/[SEP] ids come from the tokenizer, not from glassworks' own (3, 2).
    assert loaded.model.mask_id == loaded.tokenizer.hf.mask_token_id == 4
    assert loaded.tokenizer.hf.sep_token_id in loaded.model.special_ids


def test_shap_local_accuracy_and_sep_kept(hf_run):
    client, run_id = hf_run["client"], hf_run["run"].info.run_id
    path = client.download_artifacts(run_id, "explanations/attributions.parquet", str(hf_run["tmp"]))
    table = pd.read_parquet(path)
    shap_rows = table[table["method"] == "shap"]
    assert shap_rows["example_id"].nunique() == 4
    for _, rows in shap_rows.groupby("example_id"):
        assert rows["score"].sum() + rows["base_value"].iloc[0] == pytest.approx(
            rows["model_output"].iloc[0], abs=1e-4)
        assert rows["token"].iloc[-1] == "[SEP]" and abs(rows["score"].iloc[-1]) < 1e-8
        assert rows["word_index"].iloc[0] is pd.NA and rows["word_index"].iloc[-1] is pd.NA
        assert rows["word_index"].iloc[1] == 0


def test_report_model_section(hf_run):
    folder = next((hf_run["tmp"] / "reports").iterdir())
    assert "Model" in json.loads((folder / "report.json").read_text())["sections"]
    md = (folder / "report.md").read_text()
    assert str(hf_run["folder"]) in md and "trainable" in md and "the model's own" in md
    (hf_run["tmp"] / "dl").mkdir(exist_ok=True)
    path = hf_run["client"].download_artifacts(hf_run["run"].info.run_id, "model_summary.json",
                                               str(hf_run["tmp"] / "dl"))
    summary = json.loads(open(path, encoding="utf-8").read())
    assert summary["frozen_parameters"] == 0 and summary["trainable_parameters"] == summary["parameters"]
    assert summary["max_length"] == 40


def test_explain_later_via_cli(hf_run):
    out = run_cli("pipeline.explain", f"run_id={hf_run['run'].info.run_id}", "explain.methods=[rollout]",
                  "explain.n_examples=3", "explain.n_heatmaps=0", "logger.system_metrics=false",
                  cwd=hf_run["tmp"])
    assert out.returncode == 0, out.stderr[-3000:]
    for noise in ("LOAD REPORT", "Loading weights", "Writing model shards", "not sharded"):  # transformers' chatter
        assert noise not in out.stdout + out.stderr, noise


@pytest.mark.parametrize("override, message", [
    ("data.max_length=100", "data.max_length: 100 exceeds model.max_positions=48"),
    ("model.freeze_layers=5", "model.freeze_layers: 5 exceeds the model's 2 layers"),
])
def test_bad_input_fails_before_a_run(hf_run, tmp_path, override, message):
    cfg = compose_config(tmp_path, [*_hf_overrides(hf_run["folder"]), override], config_name="run")
    with pytest.raises(UserError, match=message):
        build_job(cfg)
