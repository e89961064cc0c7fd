"""Train stage: python -m pipeline.train [overrides]

Trains the configured Transformer with Lightning inside one MLflow run; logs learning curves,
test metrics, checkpoints, tokenizer and the pyfunc model. ``pipeline.run`` calls :func:`train`
and continues with the later stages in the same run.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint

from glassworks.models.lightning import TextClassifier
from glassworks.tracking.pyfunc import log_pyfunc_model
from glassworks.training.resume import ResumeCheckpoint
from glassworks.scratch import scratch_session
from pipeline.callbacks import objective
from pipeline.resume import mark_done, resume_checkpoint, resume_config, run_metrics, start_run
from pipeline.stage import Job, build, build_job, clean_errors, print_run_location

log = logging.getLogger("glassworks.train")


@dataclass
class TrainResult:
    module: TextClassifier
    metrics: dict[str, float]
    best_checkpoint: str | None
    fit_seconds: float
    train_steps: int


def train(job: Job, resume: bool = False) -> TrainResult:
    """Fit, test the best checkpoint, log the artifacts. ``resume``: continue from the run's
    resume checkpoint (same run, same config; see pipeline/resume.py)."""
    cfg, dm, tracker = job.cfg, job.datamodule, job.tracker
    net = job.model_config.build(dm.vocab_size, dm.n_classes, dm.tokenizer.pad_id)
    module = TextClassifier(net.spec, optimizer=job.optimizer, scheduler=job.scheduler,
                            label_names=dm.label_names, mask_token_prob=cfg.mask_token_prob,
                            mask_id=dm.tokenizer.mask_id)
    logger = tracker.lightning_logger()
    callbacks = list(job.callbacks)
    if not tracker.enabled:
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.LearningRateMonitor)]
    trainer: pl.Trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=logger)
    keeper = next((c for c in callbacks if isinstance(c, ResumeCheckpoint)), None)
    if keeper is not None:
        tracker.set_tags({"glassworks.resume_checkpoint": str(keeper.path)})
    ckpt_path = resume_checkpoint(keeper) if resume else None
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    fit_seconds = time.perf_counter() - start

    checkpoint = _model_checkpoint(trainer)
    best = getattr(checkpoint, "best_model_path", "") or None
    if best and Path(best).is_file():
        # Test and ship the best epoch, not the last one.
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.test:
        # One device for test: a DistributedSampler would pad the split with duplicates.
        tester: pl.Trainer = build(cfg.trainer, "trainer", devices=1, strategy="auto",
                                   logger=logger, callbacks=[], enable_progress_bar=False)
        for row in tester.test(module, datamodule=dm, verbose=False):
            metrics.update({k: float(v) for k, v in row.items()})
    if hasattr(logger, "flush"):
        logger.flush()
        logger.wait()

    if tracker.enabled:
        _log_artifacts(job, module, trainer, best)
    return TrainResult(module=module, metrics=metrics, best_checkpoint=best,
                       fit_seconds=fit_seconds, train_steps=int(trainer.global_step))


def _model_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The best-model checkpoint callback (not the resume one: both are Checkpoints)."""
    return next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)


def _log_artifacts(job: Job, module: TextClassifier, trainer: pl.Trainer, best: str | None) -> None:
    tracker, dm = job.tracker, job.datamodule
    tokenizer_dir = Path(trainer.default_root_dir) / "tokenizer"
    dm.tokenizer.save(tokenizer_dir)
    tracker.log_artifacts(tokenizer_dir, "tokenizer")
    checkpoint = _model_checkpoint(trainer)
    if tracker.log_checkpoints and checkpoint is not None and checkpoint.dirpath:
        if Path(checkpoint.dirpath).is_dir():
            tracker.log_artifacts(checkpoint.dirpath, "checkpoints")
        if best:
            tracker.set_tags({"glassworks.best_checkpoint": f"checkpoints/{Path(best).name}"})
    if tracker.log_model:
        examples = dm.split_frame("test")["text"].tolist()[:3]
        log_pyfunc_model(tracker, module.model.cpu(), dm.tokenizer, dm.label_names,
                         dm.max_length, examples)
    shutil.rmtree(tokenizer_dir, ignore_errors=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        cfg, resumed = resume_config(cfg)
        job = build_job(cfg)
        done = start_run(job, resumed)
        with job.tracker.lifecycle("train"):
            if "train" in done:
                metrics = run_metrics(job.tracker)
            else:
                metrics = train(job, resume=resumed is not None).metrics
                mark_done(job.tracker, "train", done)
        print_run_location(job.tracker, done="pipeline.train finished: " + str(
            {k: round(v, 4) for k, v in metrics.items() if k.startswith("test/")}))
    return objective(cfg, metrics)


if __name__ == "__main__":
    main()
