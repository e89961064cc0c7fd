"""The console progress bar: Lightning's Rich bar, drawn at a human's pace.

Lightning's ``RichProgressBar`` updates its task and re-reads every logged metric after each batch
(2.5% of a fit of the default model's ~10 ms CPU steps on 2 cores, bench/bench_train.py). Nobody
reads more than a few updates a second, so :class:`ProgressBar` hands a batch to Lightning's bar
only when a draw is due: the first and the last batch of every bar always, the rest at most
``refresh_rate`` (10) times a second per bar. Counts, speeds and metrics shown are Lightning's own.

Lightning's bar draws from a render thread that wakes 100 times a second to check whether a draw
was asked for; on a 2-core CPU run each wake preempts a training thread. This bar has no render
thread: a draw (~0.25 ms) happens on the training thread when a batch end is due. Measured on a
default 3-epoch fit (2 cores, logger=mlflow): the training thread was preempted 115-157 times a
second with Lightning's thread, 37-42 with a thread woken only to draw, 7-15 without one (a plain
PyTorch loop: 6.5); steps/s 1.010 of Lightning's bar, median of 12 paired rounds [0.949, 1.083]
(the woken thread: 1.010 too), so within the host's noise; kept for the preemptions, for one draw
a batch end where Lightning asks twice, and because stopping the bar (each fit and test) no longer
joins a thread.

In a terminal, log lines written while a bar is live (Lightning's "`Trainer.fit` stopped", a warning
during a fit) print above it on lines of their own (:func:`_log_above_the_bar`); they landed inside
the bar's last line.

The training bar counts epochs from 1, as the console's own lines do ("early stopping ended the fit
after epoch 3 of trainer.max_epochs=4"): the last epoch of a 4-epoch fit reads "Epoch 4/4" where
Lightning's bar reads "Epoch 3/3" under "`max_epochs=4` reached". The ``epoch`` metric and the
checkpoint names stay Lightning's 0-based count.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import RichProgressBarTheme
from rich.file_proxy import FileProxy

from glassworks.validation import ConfigError


def _log_above_the_bar() -> list[tuple[logging.StreamHandler, Any]]:
    """While the bar is live in a terminal, Rich swaps ``sys.stdout``/``sys.stderr`` for proxies that
    print above it; a logging handler keeps the stream it was made with, and its lines (Lightning's
    "`Trainer.fit` stopped", any warning during a fit) landed inside the bar's last line. Points
    every console handler of the process at the proxy of its stream; returns (handler, old stream)
    to restore when the bar stops. Nothing to do outside a terminal (no proxies)."""
    proxies = {id(p.rich_proxied_file): p for p in (sys.stdout, sys.stderr) if isinstance(p, FileProxy)}
    if not proxies:
        return []
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    rerouted = []
    for handler in {h for lg in loggers for h in lg.handlers}:
        if isinstance(handler, logging.StreamHandler) and id(handler.stream) in proxies:
            rerouted.append((handler, handler.setStream(proxies[id(handler.stream)])))
    return rerouted


class ProgressBar(RichProgressBar):
    """``RichProgressBar`` that draws each bar at most `refresh_rate` times a second (0: no bar)."""

    def __init__(
        self,
        refresh_rate: int = 10,
        leave: bool = False,
        theme: RichProgressBarTheme | None = None,
        console_kwargs: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(refresh_rate, bool) or not isinstance(refresh_rate, int) or refresh_rate < 0:
            raise ConfigError("refresh_rate", f"must be an integer >= 0 (draws a second; 0: no bar), got {refresh_rate!r}")
        super().__init__(refresh_rate=refresh_rate, leave=leave,
                         theme=theme or RichProgressBarTheme(), console_kwargs=console_kwargs)
        self.draws_per_second = refresh_rate
        self._clock = clock
        self._next_draw: dict[Any, float] = {}  # bar's task id -> clock time its next draw is due
        self._held: bool | None = None  # inside _one_draw: whether a draw was asked for; else None
        self._rerouted: list[tuple[logging.StreamHandler, Any]] = []  # (handler, its own stream)

    def _init_progress(self, trainer: pl.Trainer) -> None:
        super()._init_progress(trainer)
        live = self.progress.live if self.progress is not None else None
        polling = getattr(live, "_refresh_thread", None)
        if polling is not None:  # Lightning's render thread: draws happen in refresh() instead
            polling.stop()  # it exits at its next poll (1/refresh_rate s); nothing waits for it
            live._refresh_thread, live.auto_refresh = None, False
        if live is not None and not self._rerouted:
            self._rerouted = _log_above_the_bar()

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        """Lightning's bar metrics without ``v_num``, the logger's version: for MLflow the last 4
        characters of the run id ("v_num: e227"), where every console line shows its first 8, and
        ``run_id=e227`` is no prefix of it."""
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    def _get_train_description(self, current_epoch: int) -> str:
        """"Epoch <n>/<max_epochs>", counted from 1 ("Epoch <n>" when the fit has no epoch limit),
        padded to the validation bar's description as Lightning pads it."""
        limit = self.trainer.max_epochs
        description = f"Epoch {current_epoch + 1}" + (f"/{limit}" if limit is not None and limit >= 0 else "")
        return f"{description:{len(self.validation_description)}}"

    def _stop_progress(self) -> None:
        for handler, stream in self._rerouted:
            handler.setStream(stream)
        self._rerouted = []
        super()._stop_progress()

    def refresh(self, hard: bool = False) -> None:
        """Draw now, on the calling (training) thread: there is no render thread to ask."""
        if self._held is not None:
            self._held = True
        else:
            super().refresh(hard=True)

    @contextmanager
    def _one_draw(self) -> Iterator[None]:
        """Lightning's batch-end hook asks for a draw twice (after the count, after the metrics):
        one draw, after both."""
        self._held = False
        try:
            yield
        finally:
            asked, self._held = self._held, None
            if asked:
                super().refresh(hard=True)

    def _due(self, task_id: Any, done: int) -> bool:
        """Whether the bar `task_id`, now at `done` batches, should be drawn: always when it does not
        exist yet (Lightning creates it), is at its first or last batch; otherwise once
        1/refresh_rate s has passed since its last draw."""
        if self.is_disabled or task_id is None or self.progress is None:
            return True
        now = self._clock()
        total = next((t.total for t in self.progress.tasks if t.id == task_id), None)
        last = total is not None and done >= total
        if done > 1 and not last and now < self._next_draw.get(task_id, 0.0):
            return False
        self._next_draw[task_id] = now + 1.0 / self.draws_per_second
        return True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self._due(self.train_progress_bar_id, batch_idx + 1):
            with self._one_draw():
                super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        bar = self.val_sanity_progress_bar_id if trainer.sanity_checking else self.val_progress_bar_id
        if self._due(bar, batch_idx + 1):
            with self._one_draw():
                super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                          batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(self.test_progress_bar_id, batch_idx + 1):
            with self._one_draw():
                super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                             batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(self.predict_progress_bar_id, batch_idx + 1):
            with self._one_draw():
                super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
