"""ProgressBar: Lightning's Rich bar, drawn at most refresh_rate times a second, first and last batch always."""

from __future__ import annotations

import functools
import io
import logging
import re
import sys
import threading
import time

import pytest
import pytorch_lightning as pl
import rich
import torch
from rich.live import _RefreshThread as RenderThread  # Lightning's subclasses it
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

from glassworks.models import TransformerConfig
from glassworks.models.lightning import TextClassifier
from glassworks.training.progress import ProgressBar
from glassworks.validation import ConfigError, UserError
from pipeline.job import build, build_job
from pipeline.stage import train_inputs
from tests.conftest import compose_config

SPEC = TransformerConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0, max_positions=8).build(12, 2, 0).spec


@pytest.fixture(autouse=True)
def _rich_global_console_restored():
    """Lightning's bar calls ``rich.reconfigure(**console_kwargs)``, which rewrites rich's global
    console in place: with these tests' StringIO, whatever a later test of the process prints
    through ``rich.get_console()`` (the model table) went into that StringIO."""
    console = rich.get_console()
    saved = dict(console.__dict__)
    yield
    console.__dict__ = saved


class FakeClock:
    """Advances `step` seconds every time it is read: one read per batch end is one batch's time."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class CountingBar(ProgressBar):
    """Records which batch counts reached Lightning's bar, per bar."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.drawn: dict[str, list[int]] = {}

    def _update(self, progress_bar_id, current, visible=True, hard=False) -> None:
        name = next(t.description for t in self.progress.tasks if t.id == progress_bar_id)
        self.drawn.setdefault(name.split()[0].strip(), []).append(current)
        super()._update(progress_bar_id, current, visible, hard)


def _loader(n: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 12, (n, 6), generator=g)
    rows = [{"input_ids": i, "attention_mask": torch.ones(6, dtype=torch.long), "labels": torch.tensor(k % 2)}
            for k, i in enumerate(ids)]
    return DataLoader(rows, batch_size=2)


def _fit(bar: ProgressBar, epochs: int = 2) -> TextClassifier:
    module = TextClassifier(model_spec=SPEC, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[bar])
    trainer.fit(module, _loader(80), _loader(30))  # 40 train batches, 15 validation batches an epoch
    trainer.test(module, _loader(30), verbose=False)
    return module


def test_each_bar_is_drawn_at_its_first_and_last_batch_and_at_most_refresh_rate_times_a_second():
    # 0.01 s a batch and 10 draws a second: one draw in ten batches, plus the first and the last.
    bar = CountingBar(refresh_rate=10, clock=FakeClock(0.01), console_kwargs={"file": io.StringIO()})
    _fit(bar)
    train = bar.drawn["Epoch"]
    assert train.count(1) == 2 and train.count(40) == 2  # both epochs start at 1 and end at 40
    assert 2 * 4 <= len(train) <= 2 * 6, train  # ~one in ten of 80 batches, not 80
    assert bar.drawn["Validation"].count(15) == 2 and bar.drawn["Validation"].count(1) == 2
    assert len(bar.drawn["Validation"]) <= 2 * 4
    assert bar.drawn["Testing"][0] == 1 and bar.drawn["Testing"][-1] == 15


def test_a_slow_batch_is_drawn_every_time():
    bar = CountingBar(refresh_rate=10, clock=FakeClock(0.5), console_kwargs={"file": io.StringIO()})
    _fit(bar, epochs=1)
    assert bar.drawn["Epoch"] == list(range(1, 41))


def test_the_bar_shows_lightnings_metrics_in_a_terminal():
    out = io.StringIO()
    bar = ProgressBar(refresh_rate=10, console_kwargs={"file": out, "force_terminal": True, "width": 120})
    _fit(bar, epochs=1)
    assert bar.draws_per_second == 10
    text = out.getvalue()
    assert "40/40" in text and "15/15" in text and "it/s" in text and "val/loss" in text


def test_the_bar_leaves_out_the_loggers_version(tmp_path):
    """Lightning shows ``v_num``, for MLflow the run id's last 4 characters, which no command takes."""
    out = io.StringIO()
    bar = ProgressBar(refresh_rate=10, console_kwargs={"file": out, "force_terminal": True, "width": 120})
    module = TextClassifier(model_spec=SPEC, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path),
                         enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[bar])
    assert "v_num" in super(ProgressBar, bar).get_metrics(trainer, module)  # what Lightning's bar would show
    trainer.fit(module, _loader(80), _loader(30))
    text = out.getvalue()
    assert "val/loss" in text and "v_num" not in text


def test_the_training_bar_counts_epochs_from_one_as_the_console_lines_do():
    out = io.StringIO()
    _fit(ProgressBar(refresh_rate=10, console_kwargs={"file": out, "force_terminal": True, "width": 120}), epochs=2)
    text = out.getvalue()
    assert "Epoch 1/2" in text and "Epoch 2/2" in text and "Epoch 0" not in text


def test_a_fit_without_an_epoch_limit_shows_the_epoch_alone():
    out = io.StringIO()
    bar = ProgressBar(refresh_rate=10, console_kwargs={"file": out, "force_terminal": True, "width": 120})
    module = TextClassifier(model_spec=SPEC, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    trainer = pl.Trainer(max_epochs=-1, max_steps=50, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[bar])
    trainer.fit(module, _loader(80), _loader(30))  # 40 batches an epoch: stops in epoch 2
    text = out.getvalue()
    assert "Epoch 2 " in text and "Epoch 2/" not in text and "/-" not in text


class _WatchTheDraws(pl.Callback):
    """Which threads draw the bar during a fit, and which render threads are alive at its
    first batch end (once Lightning's, stopped, has had time to exit)."""

    def __init__(self, bar: ProgressBar) -> None:
        self.bar, self.drawn_by, self.render_threads = bar, [], None

    def on_train_start(self, trainer, pl_module) -> None:
        live = self.bar.progress.live
        refresh = live.refresh
        live.refresh = lambda: (self.drawn_by.append(threading.current_thread()), refresh())[1]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 0:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(isinstance(t, RenderThread) for t in threading.enumerate()):
                time.sleep(0.01)
            self.render_threads = [t for t in threading.enumerate() if isinstance(t, RenderThread)]


def test_the_bar_is_drawn_on_the_training_thread_and_no_thread_polls():
    # Lightning's render thread wakes 100 times a second to look for a draw request; on a 2-core
    # CPU fit each wake preempts a training thread.
    out = io.StringIO()
    bar = CountingBar(refresh_rate=10, clock=FakeClock(0.01), console_kwargs={"file": out, "force_terminal": True})
    watch = _WatchTheDraws(bar)
    module = TextClassifier(model_spec=SPEC, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, num_sanity_val_steps=0, callbacks=[bar, watch])
    trainer.fit(module, _loader(80), _loader(30))
    assert watch.render_threads == []
    assert watch.drawn_by and set(watch.drawn_by) == {threading.main_thread()}
    # one draw a due batch (Lightning's hook asks twice: 2 x 8 here), 7 more at the bars' starts and ends
    due = sum(len(counts) for counts in bar.drawn.values())
    assert len(watch.drawn_by) < 2 * due, (len(watch.drawn_by), bar.drawn)
    assert "40/40" in out.getvalue()


class _LogMidFit(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 3:
            logging.getLogger("glassworks.test_progress_bar").warning("a warning in the middle of a fit")


def test_log_lines_during_a_fit_print_above_the_bar_and_handlers_get_their_stream_back(capsys):
    # A handler keeps the stream it was made with; Rich's live display swaps sys.stderr for a proxy
    # that prints above the bar, so a line written to the old stream landed inside the bar.
    handler = logging.StreamHandler(sys.stderr)
    logger = logging.getLogger("glassworks.test_progress_bar")
    logger.addHandler(handler)
    try:
        out = io.StringIO()
        bar = ProgressBar(refresh_rate=10, console_kwargs={"file": out, "force_terminal": True, "width": 100})
        module = TextClassifier(model_spec=SPEC, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_model_summary=False, num_sanity_val_steps=0, callbacks=[bar, _LogMidFit()])
        trainer.fit(module, _loader(16), _loader(4))
        assert handler.stream is sys.stderr  # restored when the bar stopped
    finally:
        logger.removeHandler(handler)
    lines = [re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", line).strip() for line in out.getvalue().splitlines()]
    assert "a warning in the middle of a fit" in lines, [line for line in lines if "warning" in line]  # a line of its own
    assert "a warning in the middle of a fit" not in capsys.readouterr().err


@pytest.mark.parametrize("bad", [-1, 2.5, "fast", True])
def test_a_bad_refresh_rate_names_the_key(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"refresh_rate: must be an integer >= 0"):
        ProgressBar(refresh_rate=bad)
    cfg = compose_config(tmp_path, [f"callbacks.rich_progress_bar.refresh_rate={bad}"], tiny=False)
    with pytest.raises(UserError, match=r"^invalid config callbacks\.rich_progress_bar\.refresh_rate: must be"):
        build_job(cfg)


def test_zero_draws_nothing_and_trains():
    out = io.StringIO()
    module = _fit(ProgressBar(refresh_rate=0, console_kwargs={"file": out, "force_terminal": True}), epochs=1)
    assert out.getvalue() == "" and module.trainer.global_step == 40


def test_the_default_config_uses_it(tmp_path):
    cfg = compose_config(tmp_path, [], tiny=False)
    assert cfg.callbacks.rich_progress_bar._target_ == f"{ProgressBar.__module__}.{ProgressBar.__qualname__}"
    assert cfg.callbacks.rich_progress_bar.refresh_rate == 10


def test_enable_progress_bar_false_means_no_bar(tmp_path):
    # Lightning refuses a bar callback with enable_progress_bar=False; the user asked for no bar.
    job = build_job(compose_config(tmp_path, ["+trainer.enable_progress_bar=false"], tiny=False))
    assert not any(isinstance(c, ProgressBar) for c in job.callbacks)
    assert any(type(c).__name__ == "ModelTable" for c in job.callbacks)  # the others stay
    trainer = build(job.cfg.trainer, "trainer", callbacks=job.callbacks, logger=False)
    assert trainer.progress_bar_callback is None


@pytest.mark.parametrize("overrides, bar", [
    ([], "ProgressBar"),  # ours
    (["callbacks.rich_progress_bar=null"], None),  # no bar, not Lightning's drawn after every batch
    (["callbacks=none"], None),
    (["callbacks.rich_progress_bar=null", "+trainer.enable_progress_bar=true"], "RichProgressBar"),  # asked for
    (["+trainer.enable_progress_bar=false"], None),
])
def test_the_trainer_gets_the_configured_bar_or_none(tmp_path, overrides, bar):
    job = build_job(compose_config(tmp_path, overrides, tiny=False))
    trainer = train_inputs(job).make_trainer(callbacks=job.callbacks, logger=False)
    assert type(trainer.progress_bar_callback).__name__ == (bar or "NoneType")
