"""The lm LightningModule: real Lightning training at tiny size learns the agreement task; the
teacher-forced answer accuracy equals exact match of greedy generation; masking corrupts inputs
only."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch

from glassworks.data.lm_datamodule import IGNORE_INDEX, LMDataModule
from glassworks.data.lm_tasks import AgreementTask
from glassworks.models.causal_lm import CausalLM, answer_exact_match
from glassworks.models.decoder import DecoderConfig
from glassworks.models.generation import generate


@pytest.fixture(scope="module")
def trained():
    pl.seed_everything(0, verbose=False)
    dm = LMDataModule(AgreementTask(n_train=4000, n_validation=64, n_test=64), batch_size=64, max_length=16)
    dm.prepare()
    spec = DecoderConfig(d_model=64, n_heads=4, n_layers=2, d_ff=128, max_positions=16).build(dm.vocab_size, 0).spec
    module = CausalLM(spec, functools.partial(torch.optim.AdamW, lr=0.003), mask_token_prob=0.1,
                      mask_id=dm.vocab.mask_id)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, dm)
    metrics = {**trainer.callback_metrics, **trainer.test(module, dm, verbose=False)[0]}
    return module, dm, metrics


@pytest.mark.slow
def test_training_learns_agreement_and_logs_the_metrics(trained):
    _, _, metrics = trained
    assert {"train/loss", "val/loss", "val/perplexity", "test/answer_acc", "test/perplexity"} <= set(metrics)
    assert float(metrics["val/perplexity"]) == pytest.approx(float(torch.exp(torch.tensor(float(metrics["val/loss"])))), rel=1e-4)
    assert float(metrics["test/answer_acc"]) >= 0.9


@pytest.mark.slow
def test_answer_acc_is_exact_match_of_greedy_generation(trained):
    module, dm, _ = trained
    model = module.model.eval()
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        teacher_forced = answer_exact_match(model(batch["input_ids"], batch["attention_mask"]).logits,
                                            batch["input_ids"], batch["answer_mask"])
    rows = dm.encoded("test")[: len(teacher_forced)]
    generated = [generate(model, r.ids[: r.n_prompt], 3, dm.vocab.eos_id) == r.ids[r.n_prompt : r.n_prompt + r.n_answer]
                 for r in rows]
    assert teacher_forced.bool().tolist() == generated


def test_masking_corrupts_context_inputs_only():
    dm = LMDataModule(AgreementTask(n_train=64, n_validation=4, n_test=4), batch_size=64, max_length=16)
    dm.prepare()
    spec = DecoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=16, max_positions=16).build(dm.vocab_size, 0).spec
    module = CausalLM(spec, functools.partial(torch.optim.AdamW, lr=0.01), mask_token_prob=0.5, mask_id=3)
    batch = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    corrupted = module._corrupt(batch)
    changed = corrupted != batch["input_ids"]
    assert changed.any()
    assert not (changed & ~batch["context_mask"]).any()  # never [BOS], the answer, [EOS] or padding
    assert (corrupted[changed] == 3).all()
    assert (batch["targets"][batch["targets"] != IGNORE_INDEX] != 3).all()  # targets untouched


def test_bad_mask_probability_names_the_key():
    with pytest.raises(ValueError, match="mask_token_prob"):
        CausalLM({"class": "DecoderLM", "config": {}, "vocab_size": 10, "pad_id": 0},
                 functools.partial(torch.optim.AdamW), mask_token_prob=1.0)
