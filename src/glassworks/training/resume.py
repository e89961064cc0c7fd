"""Everything a killed training job needs to continue exactly where it stopped.

Lightning's checkpoint holds weights, optimizer, schedule and loop position; it holds neither
the random number generators (dropout, token masking) nor, for plain loaders, the position in
the epoch's data order. :class:`ResumeCheckpoint` adds the RNG states (the data position is the
DataModule's ``state_dict``) and keeps one file, ``<dirpath>/resume.ckpt``, up to date: every
``every_n_train_steps`` optimizer steps once ``min_interval_s`` seconds have passed since the last
write, and after every validation. On SIGTERM or Ctrl-C it finishes the current step, writes that
file, and only then stops the run. A scheduler's preemption notice (``preemption_signal``: submitit's
SIGUSR2) stops it the same way, as :class:`Preempted`, for the job to be requeued into the same run.

The file is written between two steps, once the previous step's metrics are logged and flushed:
a run resumed from it repeats no step and misses none (see glassworks.tracking.history).

Under DDP every rank decides alike (:func:`agree`, one all-reduce of two flags a step): a write
holds a barrier, so a rank whose clock passed ``min_interval_s`` first, or which got the signal
first, would otherwise wait there while the others ran the next step's gradient all-reduce.
"""

from __future__ import annotations

import logging
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint

from glassworks.preemption import Preempted
from glassworks.training.distributed import agree, from_every_rank, group_rank_and_size
from glassworks.validation import ConfigError, UserError

log = logging.getLogger(__name__)

FILENAME = "resume.ckpt"
# After the first signal, one of another kind, or the same one within this many seconds, is the
# same request to stop: a terminal's Ctrl-C reaches every process of its group, and a launcher
# between them forwards it (torchrun: SIGINT, right after) or its own (submitit's local controller
# and a joblib sweep: SIGTERM, later on a busy machine). The first signal again stops at once.
SAME_STOP_S = 1.0


def capture_rng() -> dict[str, Any]:
    """Every RNG a training step may draw from, as plain containers and tensors (so the
    checkpoint loads with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def callback_metrics(trainer: pl.Trainer) -> dict[str, torch.Tensor]:
    """The trainer's ``callback_metrics`` (what EarlyStopping and ModelCheckpoint monitor) as
    detached CPU tensors, so a checkpoint holding them loads with ``weights_only=True``."""
    return {str(k): v.detach().cpu().clone() for k, v in trainer.callback_metrics.items()
            if isinstance(v, torch.Tensor)}


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, (tuple, list)) else value


class ResumeCheckpoint(Checkpoint):
    """Keeps ``<dirpath>/resume.ckpt`` current (see the module docstring).

    A :class:`Checkpoint` subclass so that Lightning runs it after ``ModelCheckpoint`` and
    ``EarlyStopping``: the state it saves after a validation already holds their decisions.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 50, min_interval_s: float = 0.0) -> None:
        if not isinstance(every_n_train_steps, int) or every_n_train_steps < 1:
            raise ConfigError("every_n_train_steps", f"must be an integer >= 1, got {every_n_train_steps!r}")
        if isinstance(min_interval_s, bool) or not isinstance(min_interval_s, (int, float)) or not min_interval_s >= 0:
            raise ConfigError("min_interval_s", f"must be a number of seconds >= 0, got {min_interval_s!r}")
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps
        # A write waits for the metrics logged so far to reach the store (~30-60 ms on sqlite
        # while training runs): at the default model's ~20 ms steps, 50 steps is one second.
        self.min_interval_s = float(min_interval_s)
        self._last_saved_time = time.monotonic()
        self._restore: dict[str, Any] | None = None
        self._between_steps = False
        self._last_saved_step = -1
        self._stop_signal: int | None = None
        self._stop_signalled_at = 0.0  # time.monotonic() of the first signal
        self.continues = False  # the train stage hands Lightning this callback's file (resume=)
        self.ranks_decide_start = False  # resume= under torchrun/srun: says "training again" once all ranks agree
        # A scheduler's notice that the job will be stopped (submitit: SIGUSR2), set by the entry
        # point: handled like SIGTERM, and the fit ends with Preempted instead of KeyboardInterrupt.
        self.preemption_signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}

    @property
    def path(self) -> Path:
        return self.dirpath / FILENAME

    # -- state that Lightning stores with every checkpoint -------------------------------------

    def state_dict(self) -> dict[str, Any]:
        # Lightning builds a checkpoint's dict on every rank (rank 0 writes it), so this may gather.
        # Under DDP each rank's RNGs are its own: the ranks pad their batches to their own longest
        # text, so dropout and [MASK] draw different amounts. Until 2026-12-03 every rank restored
        # rank 0's, and a DDP job resumed from an epoch's end drifted (val/loss 0.69334 -> 0.69338).
        trainer = getattr(self, "_trainer", None)
        rng = capture_rng()
        state = {"rng": rng, "should_stop": bool(trainer.should_stop) if trainer else False,
                 "callback_metrics": callback_metrics(trainer) if trainer else {}}
        if group_rank_and_size()[1] > 1:
            state["rng_by_rank"] = from_every_rank(rng)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restore = state_dict

    @staticmethod
    def _rank_rng(restored: dict[str, Any]) -> dict[str, Any]:
        """This rank's RNG states from a restored file: its own where the file holds every rank's
        (a DDP write), else the one the file has (one process; files from before 2026-12-03)."""
        rank, size = group_rank_and_size()
        by_rank = restored.get("rng_by_rank")
        return by_rank[rank] if by_rank is not None and len(by_rank) == size else restored["rng"]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        if stage == "fit":
            self._check_every_rank_continues()

    def _check_every_rank_continues(self) -> None:
        """Every rank continues from the file, or none does (one all_gather_object at the start of a
        fit). Under torchrun/srun each node looks for it in the folder of rank 0's node, which alone
        writes it; a node that cannot see that folder would train from step 0 beside ranks at step N, out
        of step in every collective. All ranks fail here together instead, before any step."""
        continues = from_every_rank(self.continues)
        if self.ranks_decide_start and not any(continues) and group_rank_and_size()[0] == 0:
            log.warning("no checkpoint in %s on any node yet: training again from the start", self.dirpath)
        if len(set(continues)) > 1:
            lacking = [rank for rank, found in enumerate(continues) if not found]
            raise UserError(
                f"resume: global rank(s) {lacking} of {len(continues)} find no {self.path}, which the other "
                "ranks continue from; global rank 0 alone writes it, into its node's hydra.run.dir, so "
                "every node must see that folder at that path (a file system the nodes share). Nothing was trained")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_saved_time = time.monotonic()  # min_interval_s counts training time from here
        if self._restore is not None:
            # Here, not in load_state_dict: nothing may draw random numbers between this point
            # and the first resumed step, exactly as nothing did after the save.
            restore_rng(self._rank_rng(self._restore))
            trainer.should_stop = trainer.should_stop or self._restore.get("should_stop", False)
            # A file written after an epoch's validation resumes into that epoch's end, where
            # EarlyStopping and ModelCheckpoint read the validation's metrics (val/acc): without
            # them the resumed fit failed there ("Early stopping conditioned on metric val/acc
            # which is not available"). Older files have none.
            trainer.callback_metrics.update(self._restore.get("callback_metrics", {}))
            self._restore = None
            self._last_saved_step = trainer.global_step
        self._install_signal_handlers()

    # -- when to save --------------------------------------------------------------------------

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # Here rather than at the end of the previous batch: Lightning logs a step's metrics
        # after on_train_batch_end, and a checkpoint taken before them would, after a crash,
        # resume past a step whose metrics never reached the store.
        step = trainer.global_step
        due = (step > 0 and step % self.every_n_train_steps == 0 and step != self._last_saved_step
               and time.monotonic() - self._last_saved_time >= self.min_interval_s)
        stop, due = agree(trainer, self._stop_signal is not None, due)
        if stop:
            self._save(trainer, between_steps=True)
            self._stop(trainer)
        if due:
            self._save(trainer, between_steps=True)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self._between_steps:
            # Lightning expects step checkpoints from on_train_batch_end, taken before it counts
            # the step for its loggers, and adds one when it restarts from them; ours is taken
            # after the count (a resumed run would log every later point one step late).
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._save(trainer)
        (stop,) = agree(trainer, self._stop_signal is not None)
        if stop:
            self._stop(trainer)

    def _save(self, trainer: pl.Trainer, between_steps: bool = False) -> None:
        # Metrics up to this step must be in the store before the state that follows them is:
        # after a resume, the history then has no gap.
        for logger in trainer.loggers:
            persist = getattr(logger, "persist", None)
            if callable(persist):
                persist()
        self._between_steps = between_steps
        try:
            # weights_only=False said, not defaulted (Lightning logs that it defaulted): resuming needs the
            # optimizer, loops and callback state. Loading stays weights_only=True (plain containers).
            trainer.save_checkpoint(self.path, weights_only=False)
        finally:
            self._between_steps = False
        self._last_saved_step = trainer.global_step
        self._last_saved_time = time.monotonic()

    # -- SIGTERM / Ctrl-C / preemption: stop at the next step boundary, with a checkpoint --------

    def _install_signal_handlers(self) -> None:
        self._stop_signal = None
        signals = (signal.SIGINT, signal.SIGTERM) + ((self.preemption_signal,) if self.preemption_signal else ())
        for signum in signals:
            try:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread (e.g. a DDP worker thread): keep defaults
                return

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None:  # a second signal: stop now, unless it echoes the first
            if signum != self._stop_signal or time.monotonic() - self._stop_signalled_at < SAME_STOP_S:
                return
            raise KeyboardInterrupt(f"received {signal.Signals(signum).name} twice")
        self._stop_signal, self._stop_signalled_at = signum, time.monotonic()
        log.warning("received %s: stopping after the current step (again to stop now)",
                    signal.Signals(signum).name)

    def _stop(self, trainer: pl.Trainer) -> None:
        name = signal.Signals(self._stop_signal).name if self._stop_signal else "a signal on another rank"
        message = f"received {name}: stopped at step {trainer.global_step}, resume from {self.path}"
        if self._stop_signal is not None and self._stop_signal == self.preemption_signal:
            raise Preempted(f"preempted ({message})", self._stop_signal)
        raise KeyboardInterrupt(message)

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_signal_handlers()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_signal_handlers()
