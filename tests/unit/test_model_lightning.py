"""TextClassifier: real (tiny) Lightning fit, logged metrics, weights_only checkpoints."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from glassworks.models import TransformerConfig
from glassworks.models.lightning import TextClassifier, warn_at_chance
from glassworks.models.schedules import warmup_cosine

PAD, CLS, NEEDLE, VOCAB = 0, 2, 5, 24


def _examples(n: int, seed: int) -> list[tuple[list[int], int]]:
    """Label = whether token NEEDLE occurs: learnable by one attention lookup from [CLS]."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = int(torch.randint(3, 12, (1,), generator=g))
        ids = torch.randint(6, VOCAB, (length,), generator=g)
        label = i % 2
        if label:
            ids[int(torch.randint(0, length, (1,), generator=g))] = NEEDLE
        rows.append(([CLS, *ids.tolist()], label))
    return rows


def _collate(rows: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), PAD)  # (B, T)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    for i, (ids, _) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask,
            "labels": torch.tensor([label for _, label in rows])}


def _loader(n: int, seed: int, shuffle: bool) -> DataLoader:
    return DataLoader(_examples(n, seed), batch_size=32, shuffle=shuffle, collate_fn=_collate,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None)


SPEC = TransformerConfig(d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0,
                         max_positions=16).build(VOCAB, 2, PAD).spec
OPTIMIZER = functools.partial(torch.optim.AdamW, lr=3e-3, weight_decay=0.01)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.Trainer, TextClassifier, Path]:
    pl.seed_everything(0, workers=True)
    module = TextClassifier(
        model_spec=SPEC,
        optimizer=OPTIMIZER,
        scheduler=functools.partial(warmup_cosine, warmup_ratio=0.1),
        label_names=["absent", "present"],
    )
    trainer = pl.Trainer(
        max_epochs=12, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, deterministic=True,
    )
    trainer.fit(module, _loader(512, seed=1, shuffle=True), _loader(128, seed=2, shuffle=False))
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    trainer.save_checkpoint(path)
    return trainer, module, path


def test_fit_learns_the_task_and_logs_metrics(fitted) -> None:
    trainer, module, _ = fitted
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/acc", "train/tokens_per_sec", "val/loss", "val/acc", "val/f1"):
        assert key in metrics, f"{key} missing from {sorted(metrics)}"
    assert metrics["val/acc"] > 0.9
    assert metrics["val/f1"] > 0.9
    assert metrics["train/tokens_per_sec"] > 0


def test_test_and_predict(fitted) -> None:
    trainer, module, _ = fitted
    (results,) = trainer.test(module, _loader(64, seed=3, shuffle=False), verbose=False)
    assert {"test/loss", "test/acc", "test/f1"} <= set(results)
    assert results["test/acc"] > 0.9
    batches = trainer.predict(module, _loader(40, seed=4, shuffle=False))
    probs = torch.cat(batches)  # (N, K)
    assert probs.shape == (40, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(40))


def test_evaluation_metrics_are_the_whole_splits(fitted) -> None:
    """val/* logged once an epoch are the split's: the loss a mean over examples (the last batch
    of 100 holds 4), accuracy and F1 macro-averaged over every example."""
    trainer, module, _ = fitted
    loader = _loader(100, seed=6, shuffle=False)
    (logged,) = trainer.validate(module, loader, verbose=False)
    module.eval()
    with torch.no_grad():
        batches = list(loader)
        logits = torch.cat([module(b["input_ids"], b["attention_mask"]).logits for b in batches])  # (N, K)
    labels = torch.cat([b["labels"] for b in batches])  # (N,)
    predicted = logits.argmax(-1)
    recall = torch.stack([(predicted[labels == k] == k).float().mean() for k in (0, 1)])
    precision = torch.stack([(labels[predicted == k] == k).float().mean() for k in (0, 1)])
    f1 = (2 * precision * recall / (precision + recall)).mean()
    assert logged["val/loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)), rel=1e-5)
    assert logged["val/acc"] == pytest.approx(float(recall.mean()), rel=1e-6)
    assert logged["val/f1"] == pytest.approx(float(f1), rel=1e-6)
    # Logged again from fresh state: the metrics were reset after the epoch.
    (again,) = trainer.validate(module, loader, verbose=False)
    assert again == pytest.approx(logged)


def test_scheduler_runs_per_step(fitted) -> None:
    trainer, _, _ = fitted
    (config,) = trainer.lr_scheduler_configs
    assert config.interval == "step"
    # Cosine to min_lr_ratio=0 over exactly estimated_stepping_batches steps.
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_checkpoint_is_weights_only_and_restores_outputs(fitted) -> None:
    _, module, path = fitted
    raw = torch.load(path, weights_only=True)
    assert raw["hyper_parameters"] == {"model_spec": SPEC, "label_names": ["absent", "present"]}

    restored = TextClassifier.load_from_checkpoint(path, optimizer=OPTIMIZER, weights_only=True)
    assert restored.label_names == ["absent", "present"]
    batch = _collate(_examples(16, seed=5))
    module.eval()
    restored.eval()
    with torch.no_grad():
        expected = module(batch["input_ids"], batch["attention_mask"]).logits
        actual = restored(batch["input_ids"], batch["attention_mask"]).logits
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)


def test_hparams_exclude_factories_and_accept_mapping_spec() -> None:
    from types import MappingProxyType

    spec = MappingProxyType(SPEC)  # stands in for Hydra's DictConfig
    module = TextClassifier(model_spec=spec, optimizer=OPTIMIZER)  # type: ignore[arg-type]
    assert set(module.hparams) == {"model_spec", "label_names"}
    assert type(module.hparams["model_spec"]) is dict
    assert type(module.hparams["model_spec"]["config"]) is dict


def test_label_names_must_match_n_classes() -> None:
    with pytest.raises(ValueError, match="label_names"):
        TextClassifier(model_spec=SPEC, optimizer=OPTIMIZER, label_names=["a", "b", "c"])


class _EveryStepLogging(TextClassifier):
    """The logging TextClassifier had before it logged less: train/loss through self.log every
    step, train/acc as the Metric object every step."""

    def training_step(self, batch, batch_idx):
        loss, logits = self._shared_step(batch)
        self.train_acc.update(logits, batch["labels"])
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=32)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=32)
        return loss

    def on_train_epoch_end(self) -> None:
        pass


def _logged_history(cls: type[TextClassifier], root: Path) -> dict[str, list[tuple[int, float]]]:
    import csv

    pl.seed_everything(3, workers=True)
    module = cls(model_spec=SPEC, optimizer=OPTIMIZER, label_names=["absent", "present"])
    logger = pl.loggers.CSVLogger(root, name="log")
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=logger, log_every_n_steps=3,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         deterministic=True)
    trainer.fit(module, _loader(256, seed=1, shuffle=True), _loader(64, seed=2, shuffle=False))
    history: dict[str, list[tuple[int, float]]] = {}
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        for row in csv.DictReader(f):
            for key in ("train/loss", "train/acc", "val/acc"):
                if row.get(key):
                    history.setdefault(key, []).append((int(row["step"]), float(row[key])))
    return history


def test_logging_less_often_writes_the_same_points(tmp_path) -> None:
    """train/loss goes through self.log only on the steps Lightning writes (log_every_n_steps)
    and train/acc once an epoch: the loggers receive exactly the points, at the same steps, that
    logging every step gave."""
    ours = _logged_history(TextClassifier, tmp_path / "ours")
    before = _logged_history(_EveryStepLogging, tmp_path / "before")
    assert ours == before
    assert [step for step, _ in ours["train/loss"]][:3] == [2, 5, 8]  # 8 batches an epoch, every 3rd step
    assert len(ours["train/acc"]) == len(ours["val/acc"]) == 2


def test_a_model_at_chance_is_reported_and_a_trained_one_is_not(fitted, caplog) -> None:
    """All-zero weights give every example the same logits, so every prediction is class 0:
    macro-averaged accuracy 1/K, which the test loop reports as chance level."""
    trainer, module, _ = fitted
    with caplog.at_level(logging.WARNING, logger="glassworks.models.lightning"):
        trainer.test(module, _loader(64, seed=3, shuffle=False), verbose=False)
    assert not [r for r in caplog.records if "chance level" in r.getMessage()]

    blank = TextClassifier(model_spec=SPEC, optimizer=OPTIMIZER, label_names=["absent", "present"])
    for parameter in blank.parameters():
        torch.nn.init.zeros_(parameter)
    tester = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    with caplog.at_level(logging.WARNING, logger="glassworks.models.lightning"):
        (results,) = tester.test(blank, _loader(64, seed=3, shuffle=False), verbose=False)
    assert results["test/acc"] == pytest.approx(0.5)
    (warning,) = [r.getMessage() for r in caplog.records if "chance level" in r.getMessage()]
    assert warning.startswith("test/acc=0.500 is at chance level for 2 classes (0.500")
    assert "trainer.max_epochs" in warning and "optimizer.lr" in warning


@pytest.mark.parametrize(("acc", "n_classes", "warned"), [
    (0.5, 2, True), (0.55, 2, True), (float(torch.tensor(0.55)), 2, True), (0.551, 2, False), (0.56, 2, False),
    (0.38, 3, True), (0.39, 3, False), (0.0, 4, True)])
def test_chance_level_is_one_over_k_plus_a_margin(acc, n_classes, warned) -> None:
    assert warn_at_chance(acc, n_classes) is warned
