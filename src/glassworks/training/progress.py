"""The console progress bar: Lightning's Rich bar, drawn at a human's pace.

Lightning's ``RichProgressBar`` updates its task and re-reads every logged metric after each batch,
and its render thread wakes ``refresh_rate`` times a second (100 by default). At the default
model's ~10 ms CPU steps that is 2.5% of the fit on 2 cores (bench/bench_train.py; the render
thread competes with the training threads for the CPU). Nobody reads more than a few updates a
second, so :class:`ProgressBar` hands a batch to Lightning's bar only when a draw is due: the first
and the last batch of every bar always, the rest at most ``refresh_rate`` (10) times a second per
bar. Counts, speeds and metrics shown are Lightning's own.

Lightning's render thread wakes 100 times a second to check whether a draw was asked for, and
stopping the bar (the end of every fit and test) waits for its next wake. :class:`_DrawOnRequest`
takes its place: it sleeps until a draw is asked for (at most ``refresh_rate`` times a second) or
the bar stops. Measured on a default 3-epoch fit (2 cores, logger=mlflow): the render thread's
context switches 144-158 -> 35-38 a second, the training thread's involuntary ones (preempted)
115-157 -> 37-42 a second, the render thread's CPU 38 -> 23 ms a fit (the rest is ~90 draws of
0.25 ms); steps/s within what paired rounds resolve (two runs of 8 rounds: 1.021 and 0.991).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import RichProgressBarTheme
from pytorch_lightning.callbacks.progress.rich_progress import _RefreshThread as _PollingThread

from glassworks.validation import ConfigError


class _DrawOnRequest(_PollingThread):
    """Lightning's render thread, woken by a draw request instead of polling. Lightning's bar asks
    for a draw by setting ``refresh_cond`` (``CustomProgress.soft_refresh``, which checks for its
    own thread class: hence the subclass); here that setter wakes the thread."""

    def __init__(self, live: Any) -> None:
        self._asked = threading.Event()  # before Lightning's __init__, which sets refresh_cond
        super().__init__(live, live.refresh_per_second)

    @property
    def refresh_cond(self) -> bool:
        return self._asked.is_set()

    @refresh_cond.setter
    def refresh_cond(self, asked: bool) -> None:
        if asked:
            self._asked.set()
        else:
            self._asked.clear()

    def stop(self) -> None:
        self.done.set()
        self._asked.set()

    def run(self) -> None:
        while True:
            self._asked.wait()
            self._asked.clear()  # a draw asked for while this one renders is drawn next
            with self.live._lock:
                if self.done.is_set():  # stopped: Live.stop drew the last frame itself
                    return
                self.live.refresh()


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
        self._held: list[bool] | None = None  # draws asked for inside _one_draw (hard or not)

    def _init_progress(self, trainer: pl.Trainer) -> None:
        super()._init_progress(trainer)
        live = self.progress.live if self.progress is not None else None
        polling = getattr(live, "_refresh_thread", None)
        if isinstance(polling, _PollingThread) and not isinstance(polling, _DrawOnRequest):
            polling.stop()  # it exits at its next poll (1/refresh_rate s); nothing waits for it
            live._refresh_thread = _DrawOnRequest(live)
            live._refresh_thread.start()

    def refresh(self, hard: bool = False) -> None:
        if self._held is not None:  # inside _one_draw
            self._held.append(hard)
        else:
            super().refresh(hard)

    @contextmanager
    def _one_draw(self) -> Iterator[None]:
        """Lightning's batch-end hook asks for a draw twice (after the count, after the metrics);
        between them it reads tensors, which lets the render thread in to draw the first: one draw
        asked for, after both."""
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            if held:
                super().refresh(hard=any(held))

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
