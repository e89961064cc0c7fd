"""Resume after kill -9 on the Hugging Face path: a tiny random BERT (model=hf, no download)
killed mid-epoch continues in the same MLflow run and ends, on CPU, with exactly the metric
histories of an uninterrupted run (dropout, the new head's init and the data order included)."""

from __future__ import annotations

import pytest
import torch

from glassworks.data.sources import SyntheticSource
from glassworks.testing.hf import tiny_bert_dir
from tests.integration.test_resume import KILLED, assert_resumed, histories, only_run, pipeline, resume_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf_args(tmp_path_factory) -> list[str]:
    splits = SyntheticSource(n_train=400, n_validation=100, n_test=100).load().splits
    folder = tiny_bert_dir(tmp_path_factory.mktemp("bert") / "tiny-bert",
                           [t for s in splits.values() for t in s["text"]], max_positions=48)
    return ["data.source.n_train=400", "data.source.n_validation=100", "data.source.n_test=100",
            "data.batch_size=32", "trainer.max_epochs=2", "trainer=cpu", "callbacks.rich_progress_bar=null",
            "logger.system_metrics=false", "model=hf", f"model.pretrained={folder}", "optimizer.lr=0.002",
            "data.max_length=40", "callbacks.resume_checkpoint.every_n_train_steps=5", "callbacks.resume_checkpoint.min_interval_s=0",
            "robustness.enabled=false", "explain.methods=[rollout]", "explain.n_examples=4",
            "explain.n_heatmaps=0"]


def test_hf_run_killed_mid_epoch_resumes_exactly(hf_args, tmp_path):
    first, second = tmp_path / "uninterrupted", tmp_path / "killed"
    first.mkdir()
    second.mkdir()
    proc = pipeline(first, *hf_args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = histories(first)
    # Killed at step 8 (mid-epoch 1; its last resume checkpoint: step 5).
    assert pipeline(second, *hf_args, fault="step:8").returncode == KILLED
    run = only_run(second)
    assert run.info.status == "RUNNING"
    assert torch.load(resume_file(second), weights_only=True)["global_step"] == 5
    proc = pipeline(second, f"resume={run.info.run_id}")
    assert_resumed(proc, second, run.info.run_id, expected, resumes=1)
