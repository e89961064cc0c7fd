"""ResumeCheckpoint in a tiny in-process fit (seconds, not the minute-long subprocess tests of
tests/integration/test_resume.py): a fit restarted from its resume.ckpt logs its next point at
the step an uninterrupted fit logs it, with the same value (no step repeated, none skipped, no
+1 shift), and the restored RNG gives the same dropout."""

from __future__ import annotations

from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers.logger import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from glassworks.training.resume import FILENAME, ResumeCheckpoint

EVERY = 4
MAX_STEPS = 11  # checkpoints at steps 4 and 8; the "crash" comes after step 8's checkpoint
BATCH = 4


class RecordingLogger(Logger):
    """Keeps (step, train/loss) as Lightning hands them to a logger."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[int, float]] = []
        self.persisted = 0

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        return None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if "train/loss" in metrics:
            self.points.append((int(step), float(metrics["train/loss"])))

    def persist(self) -> None:  # what ResumeCheckpoint calls before writing (MLflowRunLogger's contract)
        self.persisted += 1


class TinyRegression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch  # (B, 4), (B, 1)
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _loader() -> DataLoader:
    # Every batch holds the same rows: a restart mid-epoch sees the data it would have seen, so
    # the test checks the callback (steps and RNG), not the data order (tested in test_resume_parts).
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 4, generator=g).repeat(10, 1)  # (40, 4): 10 steps per epoch, step 8 is mid-epoch
    y = x.sum(dim=1, keepdim=True)  # (40, 1)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)


def _fit(tmp_path, max_steps: int, ckpt_path: str | None = None) -> tuple[RecordingLogger, ResumeCheckpoint, pl.Trainer]:
    pl.seed_everything(0, verbose=False)
    logger = RecordingLogger()
    callback = ResumeCheckpoint(str(tmp_path / "resume"), every_n_train_steps=EVERY)
    trainer = pl.Trainer(max_steps=max_steps, logger=logger, callbacks=[callback], log_every_n_steps=1,
                         limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, default_root_dir=str(tmp_path))  # fmt: skip
    trainer.fit(TinyRegression(), train_dataloaders=_loader(), ckpt_path=ckpt_path)
    return logger, callback, trainer


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted fit, and a fit restarted from the resume checkpoint the first one left."""
    full_dir = tmp_path_factory.mktemp("full")
    full, callback, _ = _fit(full_dir, MAX_STEPS)
    checkpoint = torch.load(callback.path, weights_only=True)
    # The last resume.ckpt of the full fit: what a crash after step 8 leaves behind.
    copy = full_dir / "crashed.ckpt"
    torch.save(checkpoint, copy)
    resumed, _, trainer = _fit(tmp_path_factory.mktemp("resumed"), MAX_STEPS, ckpt_path=str(copy))
    return {"full": full, "resumed": resumed, "checkpoint": checkpoint, "trainer": trainer, "callback": callback}


def test_checkpoint_is_written_between_steps_every_n_steps(runs):
    checkpoint = runs["checkpoint"]
    assert runs["callback"].path.name == FILENAME
    assert checkpoint["global_step"] == 8  # the last multiple of EVERY before MAX_STEPS
    assert runs["full"].persisted >= 2  # the logger was flushed before each write
    assert set(checkpoint["callbacks"][next(k for k in checkpoint["callbacks"] if "ResumeCheckpoint" in k)]) == {
        "rng", "should_stop"}


def test_resumed_fit_logs_its_first_point_at_global_step(runs):
    full = dict(runs["full"].points)
    resumed = runs["resumed"].points
    global_step = runs["checkpoint"]["global_step"]
    # Lightning logs the loss of the step trained at global_step g as step g.
    assert sorted(full) == list(range(MAX_STEPS))
    assert [s for s, _ in resumed] == list(range(global_step, MAX_STEPS)), "a +1 shift or a repeated step"
    assert resumed[0][0] == global_step
    assert runs["trainer"].global_step == MAX_STEPS


def test_resumed_fit_reproduces_the_uninterrupted_values(runs):
    # Same weights, optimizer and RNG (dropout) from the checkpoint: the very same losses.
    full = dict(runs["full"].points)
    for step, value in runs["resumed"].points:
        assert value == pytest.approx(full[step], rel=1e-6, abs=1e-7), step
