"""The train stage: fit the task's LightningModule, test the best checkpoint, log the artifacts
(tokenizer, checkpoints, the task's pyfunc model) into the tracker's run."""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.callbacks.early_stopping import EarlyStoppingReason

from glassworks.models.summary import model_summary
from glassworks.startup import marking_spawned_ranks
from glassworks.tasks.base import Task
from glassworks.tracking import contract as C
from glassworks.training.checkpoint_io import remove_partial_writes
from glassworks.training.distributed import LaunchRank, distributed_tags, leave_process_group
from glassworks.training.resume import ResumeCheckpoint

log = logging.getLogger("glassworks.train")


@dataclass
class TrainResult:
    module: pl.LightningModule
    metrics: dict[str, float]
    best_checkpoint: str | None
    fit_seconds: float
    train_steps: int


@dataclass
class TrainInputs:
    """The train stage's objects, built from cfg by the entry point before the run exists."""

    task: Task
    model_config: Any
    datamodule: Any
    optimizer: Any
    scheduler: Any
    callbacks: Sequence[Any]
    make_trainer: Callable[..., pl.Trainer]   # the trainer config, completed with these kwargs
    mask_token_prob: float
    test: bool
    preemption_signal: int | None = None  # a scheduler's stop notice (submitit's SIGUSR2), see ResumeCheckpoint


def train(inputs: TrainInputs, tracker: Any, resume: bool = False) -> TrainResult:
    """Fit, test the best checkpoint, log the artifacts. ``resume``: continue from the run's
    resume checkpoint (same run, same config)."""
    dm = inputs.datamodule
    module = inputs.task.build_module(inputs.model_config, dm, inputs.optimizer, inputs.scheduler,
                                      inputs.mask_token_prob)
    logger = tracker.lightning_logger()
    callbacks = list(inputs.callbacks)
    if not tracker.enabled:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = inputs.make_trainer(callbacks=callbacks, logger=logger)
    tracker.set_tags(distributed_tags(trainer.world_size, trainer.num_nodes, LaunchRank.from_env()))
    keeper = next((c for c in callbacks if isinstance(c, ResumeCheckpoint)), None)
    if keeper is not None:
        tracker.set_tags({C.TAG_RESUME_CHECKPOINT: str(keeper.path)})
    launched = LaunchRank.from_env().launcher != "none"  # torchrun/srun: each rank looks on its own node
    ckpt_path = resume_checkpoint(keeper, decided_by_all_ranks=launched) if resume else None
    if keeper is not None:
        keeper.continues, keeper.ranks_decide_start = ckpt_path is not None, resume and launched
        keeper.preemption_signal = inputs.preemption_signal
    start = time.perf_counter()
    with marking_spawned_ranks(getattr(trainer.strategy, "spawns_ranks", False)), warnings.catch_warnings():
        if ckpt_path is not None:
            # The checkpoints of the fit this one continues (the same run's folder, as it should be).
            warnings.filterwarnings("ignore", r"Checkpoint directory .* exists and is not empty")
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    fit_seconds = time.perf_counter() - start
    leave_process_group()
    if trainer.global_rank != 0:  # torchrun/srun: rank 0 tests, logs and ships the model
        return TrainResult(module=module, metrics={}, best_checkpoint=None, fit_seconds=fit_seconds,
                           train_steps=int(trainer.global_step))

    report_early_stop(trainer)
    checkpoint = model_checkpoint(trainer)
    best = getattr(checkpoint, "best_model_path", "") or None
    if best and Path(best).is_file():
        # Test and ship the best epoch, not the last one.
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if inputs.test:
        # One device for test: a DistributedSampler would pad the split with duplicates.
        tester = inputs.make_trainer(devices=1, num_nodes=1, strategy="auto", logger=logger, callbacks=[],
                                     enable_progress_bar=False)
        for row in tester.test(module, datamodule=dm, verbose=False):
            metrics.update({k: float(v) for k, v in row.items()})
    if hasattr(logger, "flush"):
        logger.flush()
        logger.wait()

    if tracker.enabled:
        _log_artifacts(inputs, tracker, module, trainer, best)
    return TrainResult(module=module, metrics=metrics, best_checkpoint=best,
                       fit_seconds=fit_seconds, train_steps=int(trainer.global_step))


def report_early_stop(trainer: pl.Trainer) -> None:
    """One console line when early stopping ended the fit before ``trainer.max_epochs``: the
    progress bar alone shows a last epoch lower than asked, and nothing says why."""
    stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    if stopper is None or stopper.stopping_reason == EarlyStoppingReason.NOT_STOPPED:
        return
    if trainer.max_epochs is not None and 0 <= trainer.max_epochs <= stopper.stopped_epoch + 1:
        return  # it fired on the last epoch: the fit ended where it was asked to
    reason = (stopper.stopping_reason_message or stopper.stopping_reason.value).replace(" Signaling Trainer to stop.", "")
    log.info("early stopping (callbacks.early_stopping) ended the fit after epoch %d of trainer.max_epochs=%s: %s",
             stopper.stopped_epoch + 1, trainer.max_epochs, reason)


def model_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The best-model checkpoint callback (not the resume one: both are Checkpoints)."""
    return next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)


def resume_checkpoint(keeper: ResumeCheckpoint | None, decided_by_all_ranks: bool = False) -> str | None:
    """The checkpoint ``keeper`` wrote to continue from; None: train from the start (in the same run).
    `decided_by_all_ranks` (torchrun/srun, where every rank looks for the file on its own node):
    a missing file is not yet a start from scratch; the ranks agree at the fit's start
    (``ResumeCheckpoint.setup``), which says so, or stops them all when only some found it."""
    if keeper is None:
        log.warning("callbacks has no resume_checkpoint: training again from the start")
        return None
    for partial in remove_partial_writes(keeper.dirpath):
        log.warning("removed %s, a checkpoint write the crash interrupted", partial)
    if keeper.path.is_file():
        log.info("continuing from %s", keeper.path)
        return str(keeper.path)
    if decided_by_all_ranks:
        log.info("no checkpoint in %s on this node", keeper.dirpath)
    else:
        log.warning("no checkpoint in %s yet: training again from the start", keeper.dirpath)
    return None


def _log_artifacts(inputs: TrainInputs, tracker: Any, module: pl.LightningModule, trainer: pl.Trainer,
                   best: str | None) -> None:
    dm = inputs.datamodule
    tokenizer_dir = Path(trainer.default_root_dir) / C.TOKENIZER_DIR
    dm.tokenizer.save(tokenizer_dir)
    tracker.log_artifacts(tokenizer_dir, C.TOKENIZER_DIR)
    tracker.log_dict(model_summary(module.model, dm.tokenizer, dm.max_length), C.MODEL_SUMMARY)
    checkpoint = model_checkpoint(trainer)
    if tracker.log_checkpoints and checkpoint is not None and checkpoint.dirpath:
        if Path(checkpoint.dirpath).is_dir():
            tracker.log_artifacts(checkpoint.dirpath, C.CHECKPOINTS_DIR)
        if best:
            tracker.set_tags({C.TAG_BEST_CHECKPOINT: C.checkpoint_artifact(Path(best).name)})
    if tracker.log_model:
        inputs.task.log_model(tracker, module, dm)
    shutil.rmtree(tokenizer_dir, ignore_errors=True)
