"""ModelTable: the model's parts when a fit starts, without metric objects or a FLOPs column of zeros."""

from __future__ import annotations

import functools

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from glassworks.models import TransformerConfig
from glassworks.models.lightning import TextClassifier
from glassworks.training.model_table import ModelTable, model_rows, totals_line
from glassworks.validation import ConfigError, UserError
from pipeline.job import build_job
from tests.conftest import compose_config

SPEC = TransformerConfig(d_model=16, n_heads=2, n_layers=2, d_ff=32, dropout=0.0, max_positions=8).build(12, 2, 0).spec


def _module() -> TextClassifier:
    return TextClassifier(model_spec=SPEC, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))


def test_rows_are_the_network_to_max_depth_and_never_a_metric():
    module = _module()
    assert [r.name for r in model_rows(module, 1)] == ["model"]
    rows = model_rows(module, 2)
    assert [r.name for r in rows] == ["model", "model.tok_emb", "model.pos_emb", "model.drop", "model.blocks",
                                      "model.ln_f", "model.head"]
    assert rows[0].kind == "TransformerClassifier" and rows[4].kind == "ModuleList"
    total = sum(p.numel() for p in module.parameters())
    assert rows[0].params == rows[0].trainable == total
    assert rows[0].params == sum(r.params for r in rows[1:])  # the children add up to their parent
    assert not any("acc" in r.name or "f1" in r.name for r in model_rows(module, 5))
    assert model_rows(module, 0) == []


def test_frozen_parts_and_eval_mode_are_counted():
    module = _module()
    for p in module.model.tok_emb.parameters():
        p.requires_grad_(False)
    module.model.head.eval()
    rows = {r.name: r for r in model_rows(module, 2)}
    emb = module.model.tok_emb.weight.numel()
    assert rows["model.tok_emb"].trainable == 0 and rows["model.tok_emb"].params == emb
    assert rows["model"].params - rows["model"].trainable == emb
    assert not rows["model.head"].training and rows["model"].training
    line = totals_line(module)
    assert line.startswith("Params: ") and " frozen, " in line and line.endswith(" MB)")


@pytest.mark.parametrize("bad", [-1, "abc", 1.5, True])
def test_a_bad_depth_names_the_key(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"max_depth: must be an integer >= 0"):
        ModelTable(max_depth=bad)
    cfg = compose_config(tmp_path, [f"callbacks.model_summary.max_depth={bad}"])
    with pytest.raises(UserError, match=r"^invalid config callbacks\.model_summary\.max_depth: must be an integer >= 0"):
        build_job(cfg)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 12, (16, 6), generator=g)
    rows = [{"input_ids": i, "attention_mask": torch.ones(6, dtype=torch.long), "labels": torch.tensor(k % 2)}
            for k, i in enumerate(ids)]
    return DataLoader(rows, batch_size=8)


def test_a_fit_prints_the_table_once_with_columns_that_say_something(capsys):
    module = _module()
    for p in module.model.head.parameters():
        p.requires_grad_(False)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[ModelTable(max_depth=2)])
    trainer.fit(module, _loader())
    out = capsys.readouterr().out
    assert out.count("model.blocks") == 1 and "TransformerClassifier" in out
    assert "Trainable" in out  # the head is frozen
    assert "FLOPs" not in out and "Mode" not in out and "train_acc" not in out and "MulticlassAccuracy" not in out
    assert "Params: " in out and " frozen, " in out


def test_the_default_config_prints_ours_and_not_lightnings(tmp_path):
    cfg = compose_config(tmp_path, [], tiny=True)
    assert cfg.trainer.enable_model_summary is False
    assert cfg.callbacks.model_summary._target_ == f"{ModelTable.__module__}.{ModelTable.__qualname__}"
