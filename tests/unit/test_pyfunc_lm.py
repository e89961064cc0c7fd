"""The generation pyfunc: logged to a real sqlite MLflow store, loaded with mlflow.pyfunc."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import torch

from glassworks.data.lm_tasks import RecallTask
from glassworks.data.lm_vocab import WordVocab
from glassworks.models.decoder import DecoderConfig
from glassworks.models.generation import generate
from glassworks.tracking.pyfunc_lm import GENERATED_COLUMN, WEIGHTS_FILE, load_lm_dir, save_lm_files, save_lm_pyfunc


@pytest.fixture(scope="module")
def vocab() -> WordVocab:
    return WordVocab.from_symbols(RecallTask().symbols())


@pytest.fixture(scope="module")
def model(vocab):
    torch.manual_seed(0)
    m = DecoderConfig(d_model=32, n_heads=2, n_layers=1, d_ff=64, max_positions=16).build(len(vocab), 0)
    with torch.no_grad():
        m.tok_emb.weight.mul_(20)  # varied greedy outputs from an untrained model
    return m.eval()


def test_files_hold_safetensors_and_rebuild_the_model(tmp_path, model, vocab):
    path = save_lm_files(model, vocab, tmp_path / "files")
    assert (path / WEIGHTS_FILE).read_bytes()[8:9] == b"{"  # safetensors: 8-byte length + JSON header
    assert not list(path.rglob("*.pt")) and not list(path.rglob("*.pkl"))
    loaded = load_lm_dir(path)
    ids = torch.tensor([vocab.encode("k1 v2 ? k1")])
    torch.testing.assert_close(loaded.model(ids).logits, model(ids).logits)


def test_logged_pyfunc_generates_like_the_model(tmp_path, model, vocab):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("lm", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment)
    local = save_lm_pyfunc(model, vocab, tmp_path / "model", ["k1 v2 ? k1"])
    assert not list(local.rglob("*.pkl"))  # models from code: the class is built, nothing unpickled
    client.log_artifacts(run.info.run_id, str(local), "model")
    client.set_terminated(run.info.run_id)

    mlflow.set_tracking_uri(uri)
    try:
        pyfunc = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    finally:
        mlflow.set_tracking_uri(None)
    prompts = ["k1 v2 k3 v4 ? k3", "k5 v6 ? k5"]
    out = pyfunc.predict(pd.DataFrame({"prompt": prompts}), params={"max_new_tokens": 3})
    assert list(out.columns) == [GENERATED_COLUMN]
    expected = [vocab.decode(generate(model, vocab.encode(p), 3, vocab.eos_id)) for p in prompts]
    assert out[GENERATED_COLUMN].tolist() == expected
    assert all(len(t.split()) <= 3 for t in expected)

    sampled = [pyfunc.predict(pd.DataFrame({"prompt": prompts}),
                              params={"max_new_tokens": 3, "temperature": 1.0, "seed": 7})
               for _ in range(2)]
    pd.testing.assert_frame_equal(sampled[0], sampled[1])  # seeded sampling repeats

    with pytest.raises(ValueError, match="exceeds the model's context of 16"):
        pyfunc.predict(pd.DataFrame({"prompt": [" ".join(["k1"] * 14)]}), params={"max_new_tokens": 3})
