"""The pyfunc users load means what it says: a model trained in seconds on the synthetic task,
logged to a real sqlite store, loaded back with mlflow.pyfunc. Its columns are predict_proba's
columns in label order (a swap of the columns fails here) and a positive text scores higher on
``positive`` than a negative one."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from mlflow.models import Model

from glassworks.data.synthetic import generate_split
from glassworks.data.tokenizer import TextTokenizer, TokenizerConfig
from glassworks.models.transformer import TransformerConfig
from glassworks.testing import (
    CLEARLY_NEGATIVE,
    CLEARLY_POSITIVE,
    MEANING_TEXTS,
    assert_columns_follow_label_order,
    assert_positive_scores_higher,
    prediction_frame,
)
from glassworks.tracking import contract as C
from glassworks.tracking.logged_model import download_run_model, has_run_model, logged_model_uri, run_model_id
from glassworks.tracking.pyfunc import (
    MODEL_TYPE,
    LoadedModel,
    TextClassifierPyfunc,
    load_model_dir,
    load_run_model,
    log_pyfunc_model,
    save_model_files,
)
from glassworks.tracking.tracker import MLflowTracker

LABELS = ["negative", "positive"]
MAX_LENGTH = 16


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """(run_id, tracking uri, the in-process LoadedModel) of a tiny model trained on the synthetic task."""
    tmp = tmp_path_factory.mktemp("pyfunc")
    examples = generate_split(512, seed=0, split="train", min_words=3, max_words=8, negation_prob=0.0,
                              two_evidence_prob=0.0, distractor_prob=0.0)
    tokenizer = TextTokenizer.train([e.text for e in examples], TokenizerConfig())
    encoded = tokenizer.encode_batch([e.text for e in examples], MAX_LENGTH)
    ids = torch.full((len(encoded), MAX_LENGTH), tokenizer.pad_id, dtype=torch.long)  # (N, T)
    for row, e in enumerate(encoded):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
    labels = torch.tensor([e.label for e in examples])  # (N,)
    torch.manual_seed(0)
    model = TransformerConfig(d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0,
                              max_positions=MAX_LENGTH).build(tokenizer.vocab_size, len(LABELS), tokenizer.pad_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(6):  # ~1 s on one core
        for start in range(0, len(ids), 64):
            x, y = ids[start : start + 64], labels[start : start + 64]
            loss = F.cross_entropy(model(x, (x != tokenizer.pad_id).long()).logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    tracker = MLflowTracker(tracking_uri=uri, system_metrics=False)
    run_id = tracker.start("pyfunc-meaning", {C.TAG_DATA_NAME: "synthetic", C.TAG_DATA_DIGEST: "d" * 40})
    tracker.log_metrics({"test/acc": 0.75, "test/f1": 0.5, "val/acc": 0.7}, step=3)
    log_pyfunc_model(tracker, model, tokenizer, LABELS, MAX_LENGTH, list(MEANING_TEXTS))
    tracker.end("FINISHED")
    return run_id, uri, LoadedModel(model, tokenizer, LABELS, MAX_LENGTH)


def test_the_model_is_an_mlflow3_logged_model_of_the_run(logged):
    """What the MLflow 3 UI lists on the run page and in the Models tab: a READY LoggedModel named
    ``model``, an output of the run, carrying the run's params and its test metrics (on the test
    split's dataset); runs:/<id>/model and models:/<model_id> are the same files."""
    run_id, uri, _ = logged
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    model_id = run_model_id(client, run_id)
    assert [o.model_id for o in run.outputs.model_outputs] == [model_id]
    model = client.get_logged_model(model_id)
    assert (model.name, model.source_run_id, model.model_type) == (C.MODEL_NAME, run_id, MODEL_TYPE)
    assert model.status == LoggedModelStatus.READY
    assert model.experiment_id == run.info.experiment_id
    assert {(m.key, m.value, m.dataset_name) for m in model.metrics} == {
        ("test/acc", 0.75, "synthetic-test"), ("test/f1", 0.5, "synthetic-test")}
    assert has_run_model(uri, run_id) and not has_run_model(uri, "0" * 32)
    mlmodel = Model.load(str(download_run_model(uri, run_id) / "MLmodel"))
    assert (mlmodel.model_id, mlmodel.run_id) == (model_id, run_id)
    assert mlmodel.signature.inputs.input_names() == ["text"] and mlmodel.saved_input_example_info
    # the files live with the LoggedModel, not among the run's own artifacts
    assert C.MODEL_NAME not in [a.path for a in client.list_artifacts(run_id)]
    assert "MLmodel" in [f.path for f in client.list_logged_model_artifacts(model_id)]
    assert logged_model_uri(model_id) == model.model_uri


def test_in_process_model_knows_positive_from_negative(logged):
    _, _, in_process = logged
    probs = in_process.predict_proba(list(MEANING_TEXTS))  # (8, 2)
    assert_positive_scores_higher(lambda texts: pd.DataFrame(in_process.predict_proba(texts), columns=LABELS))
    assert probs[: len(CLEARLY_POSITIVE), 1].min() > 0.5 > probs[len(CLEARLY_POSITIVE) :, 1].max()


def test_pyfunc_columns_are_predict_proba_in_label_order(logged, tmp_path):
    run_id, uri, in_process = logged
    # Downloaded with an explicit URI: mlflow.set_tracking_uri would leak into later tests.
    pyfunc = mlflow.pyfunc.load_model(str(download_run_model(uri, run_id)))
    texts = [*MEANING_TEXTS, "", "the plot was fine"]
    predictions = pyfunc.predict(pd.DataFrame({"text": texts}))
    assert_columns_follow_label_order(predictions, in_process.predict_proba(texts), LABELS)
    assert_positive_scores_higher(lambda t: pyfunc.predict(pd.DataFrame({"text": t})))
    # the same model read back without unpickling (what the explain stage uses)
    reloaded = load_run_model(run_id, uri)
    assert reloaded.label_names == LABELS
    np.testing.assert_allclose(reloaded.predict_proba(texts), in_process.predict_proba(texts), atol=1e-6)


def test_model_files_round_trip_into_a_new_folder_and_the_pyfunc_reads_its_inputs(logged, tmp_path):
    _, _, in_process = logged
    files = save_model_files(in_process.model, in_process.tokenizer, LABELS, MAX_LENGTH, tmp_path / "a" / "files")
    reloaded = load_model_dir(files)
    assert (reloaded.label_names, reloaded.max_length) == (LABELS, MAX_LENGTH)
    texts = list(MEANING_TEXTS)
    np.testing.assert_allclose(reloaded.predict_proba(texts), in_process.predict_proba(texts), atol=1e-6)

    pyfunc = TextClassifierPyfunc()
    pyfunc.loaded = in_process  # what load_context sets
    one = pyfunc.predict(None, texts[0])  # a bare string is one text, not its characters
    assert one.shape == (1, 2)
    np.testing.assert_allclose(pyfunc.predict(None, texts).to_numpy(), in_process.predict_proba(texts), atol=1e-6)
    with pytest.raises(ValueError, match=r"needs a 'text' column, got \['review'\]"):
        pyfunc.predict(None, pd.DataFrame({"review": texts}))


def test_the_helpers_fail_on_a_model_with_swapped_columns(logged):
    """The checks themselves can fail: the mutant the review planted (probs[:, ::-1])."""
    _, _, in_process = logged
    texts = list(MEANING_TEXTS)
    probs = in_process.predict_proba(texts)
    swapped = pd.DataFrame(probs[:, ::-1], columns=LABELS)
    with pytest.raises(AssertionError, match="column 'negative'"):
        assert_columns_follow_label_order(swapped, probs, LABELS)
    with pytest.raises(AssertionError, match="label order"):
        assert_columns_follow_label_order(pd.DataFrame(probs, columns=LABELS[::-1]), probs, LABELS)
    with pytest.raises(AssertionError, match="4/4 pairs"):
        assert_positive_scores_higher(lambda t: pd.DataFrame(in_process.predict_proba(t)[:, ::-1], columns=LABELS))


def test_prediction_frame_reads_a_scoring_server_answer():
    answer = {"predictions": [{"negative": 0.2, "positive": 0.8}, {"negative": 0.9, "positive": 0.1}]}
    frame = prediction_frame(answer)
    assert list(frame.columns) == LABELS and frame["positive"].tolist() == [0.8, 0.1]
    assert len(CLEARLY_NEGATIVE) == len(CLEARLY_POSITIVE) == 4
    with pytest.raises(TypeError, match="str"):
        prediction_frame("not predictions")
