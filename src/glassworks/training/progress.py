"""The console progress bar: Lightning's Rich bar, drawn at a human's pace.

Lightning's ``RichProgressBar`` updates its task and re-reads every logged metric after each batch,
and its render thread wakes ``refresh_rate`` times a second (100 by default). At the default
model's ~10 ms CPU steps that is 2.5% of the fit on 2 cores (bench/bench_train.py; the render
thread competes with the training threads for the CPU). Nobody reads more than a few updates a
second, so :class:`ProgressBar` hands a batch to Lightning's bar only when a draw is due: the first
and the last batch of every bar always, the rest at most ``refresh_rate`` (10) times a second per
bar. Counts, speeds and metrics shown are Lightning's own.

The render thread still polls 100 times a second (a flag check; it renders only after a draw):
Lightning's thread sleeps ``1 / refresh_per_second`` between polls, and stopping the bar at the end
of every fit and test joins it, so a 10 Hz poll would add up to 0.1 s to each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import RichProgressBarTheme

from glassworks.validation import ConfigError


_POLLS_PER_SECOND = 100  # Lightning's default refresh_rate: how often its render thread checks for a draw


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
        super().__init__(refresh_rate=_POLLS_PER_SECOND if refresh_rate else 0, leave=leave,
                         theme=theme or RichProgressBarTheme(), console_kwargs=console_kwargs)
        self.draws_per_second = refresh_rate
        self._clock = clock
        self._next_draw: dict[Any, float] = {}  # bar's task id -> clock time its next draw is due

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
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                                batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        bar = self.val_sanity_progress_bar_id if trainer.sanity_checking else self.val_progress_bar_id
        if self._due(bar, batch_idx + 1):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                          batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(self.test_progress_bar_id, batch_idx + 1):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                             batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(self.predict_progress_bar_id, batch_idx + 1):
            super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
