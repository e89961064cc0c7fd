"""ResumeCheckpoint in a tiny in-process fit (seconds, not the minute-long subprocess tests of
tests/integration/test_resume.py): a fit restarted from its resume.ckpt logs its next point at
the step an uninterrupted fit logs it, with the same value (no step repeated, none skipped, no
+1 shift), and the restored RNG gives the same dropout."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.logger import Logger
from glassworks.training.distributed import ddp_strategy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from glassworks.training import resume
from glassworks.training.resume import FILENAME, ResumeCheckpoint, capture_rng
from glassworks.validation import ConfigError

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
        "rng", "should_stop", "callback_metrics"}


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


# ------------------------------------------------------------------ SIGTERM, validation, should_stop
class _Signaller(pl.Callback):
    """Sends this process SIGTERM after a given step (what a scheduler does on preemption) and keeps
    the exception the fit ends with."""

    def __init__(self, after_step: int, in_validation: bool = False) -> None:
        self.after_step = after_step
        self.in_validation = in_validation
        self.exception: BaseException | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.in_validation:
            self._signal(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.in_validation:
            self._signal(trainer)

    def _signal(self, trainer) -> None:
        if trainer.global_step == self.after_step:
            # Without ResumeCheckpoint's handler SIGTERM would end the test process: fail instead.
            handler = signal.getsignal(signal.SIGTERM)
            assert getattr(handler, "__func__", None) is ResumeCheckpoint._on_signal, f"SIGTERM handler is {handler!r}"
            os.kill(os.getpid(), signal.SIGTERM)

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.exception = exception


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_sigterm_stops_at_the_next_step_boundary_with_a_checkpoint(tmp_path, caplog):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    lightning_log = logging.getLogger("pytorch_lightning")
    lightning_messages = _ListHandler()
    lightning_log.addHandler(lightning_messages)
    pl.seed_everything(0, verbose=False)
    callback = ResumeCheckpoint(str(tmp_path / "resume"), every_n_train_steps=100)
    signaller = _Signaller(after_step=6)
    trainer = pl.Trainer(max_steps=MAX_STEPS, logger=False, callbacks=[callback, signaller], limit_val_batches=0,
                         enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, default_root_dir=str(tmp_path))  # fmt: skip
    try:
        with caplog.at_level(logging.WARNING, logger="glassworks.training.resume"), pytest.raises(SystemExit):
            trainer.fit(TinyRegression(), train_dataloaders=_loader())  # Lightning exits on KeyboardInterrupt
        # the handlers the fit found are back (Lightning itself ignores SIGINT while it shuts down)
        assert signal.getsignal(signal.SIGTERM) is handlers[signal.SIGTERM]
    finally:
        lightning_log.removeHandler(lightning_messages)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert "received SIGTERM: stopping after the current step" in caplog.text
    assert isinstance(signaller.exception, KeyboardInterrupt)
    assert str(signaller.exception) == f"received SIGTERM: stopped at step 6, resume from {callback.path}"
    checkpoint = torch.load(callback.path, weights_only=True)
    assert checkpoint["global_step"] == 6  # the step it finished, not 100
    # taken between steps, so with the same fix-up as the periodic ones (8 -> 7, see runs): no +1 shift
    assert checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] == 5
    assert not [m for m in lightning_messages.messages if "weights_only" in m]  # said, not defaulted


def test_a_second_signal_stops_at_once_unless_it_echoes_the_first(tmp_path, monkeypatch):
    callback = ResumeCheckpoint(str(tmp_path), every_n_train_steps=5)
    callback._on_signal(signal.SIGINT, None)  # the first one only asks to stop after the step
    # A terminal's Ctrl-C, forwarded by the launcher between it and this process: the same
    # request, not a second one (torchrun forwards it at once, submitit and joblib sweeps SIGTERM).
    callback._on_signal(signal.SIGINT, None)
    monkeypatch.setattr(resume, "SAME_STOP_S", 0.05)
    time.sleep(0.06)
    callback._on_signal(signal.SIGTERM, None)
    with pytest.raises(KeyboardInterrupt, match="received SIGINT twice"):  # Ctrl-C again
        callback._on_signal(signal.SIGINT, None)


class _TinyWithValidation(TinyRegression):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", nn.functional.mse_loss(self.net(x), y))


def test_validation_in_fit_saves_and_validate_alone_does_not(tmp_path):
    pl.seed_everything(0, verbose=False)
    callback = ResumeCheckpoint(str(tmp_path / "fit"), every_n_train_steps=100)
    trainer = pl.Trainer(max_steps=7, val_check_interval=3, limit_val_batches=1, num_sanity_val_steps=0,
                         logger=CSVLogger(str(tmp_path)), callbacks=[callback],  # a logger without persist() enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, default_root_dir=str(tmp_path))  # fmt: skip
    model = _TinyWithValidation()
    trainer.fit(model, train_dataloaders=_loader(), val_dataloaders=_loader())
    assert torch.load(callback.path, weights_only=True)["global_step"] == 6  # the last validation's step

    alone = ResumeCheckpoint(str(tmp_path / "validate"), every_n_train_steps=100)
    pl.Trainer(logger=False, callbacks=[alone], limit_val_batches=1, enable_progress_bar=False,
               enable_model_summary=False, accelerator="cpu", devices=1,
               default_root_dir=str(tmp_path)).validate(model, dataloaders=_loader())  # fmt: skip
    assert not alone.path.exists()


def test_should_stop_is_saved_and_an_old_checkpoint_without_it_keeps_training(tmp_path):
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu", devices=1,
                         default_root_dir=str(tmp_path))  # fmt: skip
    callback = ResumeCheckpoint(str(tmp_path), every_n_train_steps=5)
    assert callback.state_dict()["should_stop"] is False  # before setup: no trainer yet
    callback.setup(trainer, None, "fit")
    trainer.should_stop = True  # e.g. EarlyStopping decided before the save
    assert callback.state_dict()["should_stop"] is True

    for saved, expected in (({"should_stop": True}, True), ({}, False)):  # {}: written before the key existed
        trainer.should_stop = False
        resumed = ResumeCheckpoint(str(tmp_path), every_n_train_steps=5)
        resumed.load_state_dict({"rng": capture_rng(), **saved})
        resumed.on_train_start(trainer, None)
        resumed.on_train_end(trainer, None)  # puts the signal handlers back
        assert trainer.should_stop is expected, saved


def test_sigterm_during_validation_stops_after_it_with_a_checkpoint(tmp_path):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    pl.seed_everything(0, verbose=False)
    callback = ResumeCheckpoint(str(tmp_path / "resume"), every_n_train_steps=100)
    signaller = _Signaller(after_step=3, in_validation=True)
    trainer = pl.Trainer(max_steps=7, val_check_interval=3, limit_val_batches=1, num_sanity_val_steps=0,
                         logger=False, callbacks=[callback, signaller], enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, default_root_dir=str(tmp_path))  # fmt: skip
    try:
        with pytest.raises(SystemExit):
            trainer.fit(_TinyWithValidation(), train_dataloaders=_loader(), val_dataloaders=_loader())
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert str(signaller.exception) == f"received SIGTERM: stopped at step 3, resume from {callback.path}"
    assert torch.load(callback.path, weights_only=True)["global_step"] == 3


def test_checkpoints_written_by_others_are_left_alone_and_a_bad_interval_is_named(tmp_path):
    # ModelCheckpoint or a user's trainer.save_checkpoint: only ResumeCheckpoint's own
    # between-steps saves get the step fix-up.
    callback = ResumeCheckpoint(str(tmp_path), every_n_train_steps=5)
    checkpoint = {"loops": {"fit_loop": {"epoch_loop.state_dict": {"_batches_that_stepped": 5}}}}
    callback.on_save_checkpoint(None, None, checkpoint)
    assert checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] == 5
    with pytest.raises(ConfigError, match="every_n_train_steps.*must be an integer >= 1, got 0"):
        ResumeCheckpoint(str(tmp_path), every_n_train_steps=0)


def test_min_interval_skips_step_writes_until_enough_training_time_passed(tmp_path, monkeypatch):
    # A clock that advances 1 s per training step: with min_interval_s=6 the step-4 boundary
    # (4 s after the start) is skipped and step 8 (8 s) is written, then nothing until 14 s.
    from glassworks.training import resume as resume_module

    now = [0.0]
    monkeypatch.setattr(resume_module.time, "monotonic", lambda: now[0])

    class Clock(pl.Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            now[0] += 1.0

    pl.seed_everything(0, verbose=False)
    logger = RecordingLogger()
    callback = ResumeCheckpoint(str(tmp_path / "resume"), every_n_train_steps=EVERY, min_interval_s=6)
    written: list[int] = []
    save = callback._save
    monkeypatch.setattr(callback, "_save", lambda trainer, **kw: (written.append(trainer.global_step), save(trainer, **kw)))
    trainer = pl.Trainer(max_steps=13, logger=logger, callbacks=[Clock(), callback], log_every_n_steps=1,
                         limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, default_root_dir=str(tmp_path))  # fmt: skip
    trainer.fit(TinyRegression(), train_dataloaders=_loader())
    assert written == [8]
    assert torch.load(callback.path, weights_only=True)["global_step"] == 8


@pytest.mark.parametrize("bad", [-1, "10", None, True])
def test_a_bad_min_interval_is_named(tmp_path, bad):
    with pytest.raises(ConfigError, match="min_interval_s.*seconds >= 0"):
        ResumeCheckpoint(str(tmp_path), min_interval_s=bad)


# ------------------------------------------------------------------ DDP: every rank decides alike
class _FastClockOnRankOne(pl.Callback):
    """Rank 1's clock gains 1000 s whenever it is read: only that rank finds `min_interval_s`
    passed at step 4."""

    def setup(self, trainer, pl_module, stage) -> None:
        if trainer.global_rank == 1:
            from glassworks.training import resume as resume_module

            real, reads = resume_module.time.monotonic, itertools.count()
            resume_module.time = SimpleNamespace(monotonic=lambda: real() + 1000.0 * next(reads))


def test_ranks_save_together_when_only_one_rank_finds_a_write_due(tmp_path):
    # A rank saving alone would wait in the save's barrier while the other runs the next step's
    # gradient all-reduce: a hang (here: an error after the process group's 60 s timeout).
    pl.seed_everything(0, verbose=False)
    callback = ResumeCheckpoint(str(tmp_path / "resume"), every_n_train_steps=EVERY, min_interval_s=600)
    strategy = ddp_strategy(process_group_backend="gloo", timeout=timedelta(seconds=60))  # spawns
    trainer = pl.Trainer(max_steps=6, logger=False, callbacks=[_FastClockOnRankOne(), callback], strategy=strategy,
                         limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=2, default_root_dir=str(tmp_path))
    trainer.fit(TinyRegression(), train_dataloaders=_loader())
    assert torch.load(callback.path, weights_only=True)["global_step"] == EVERY
