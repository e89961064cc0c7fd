"""The console filters: dependency chatter shown once or not at all, everything else untouched."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytorch_lightning as pl

from glassworks.console import _DropRepeats, quiet_dependencies


@contextmanager
def _captured(logger_name: str) -> Iterator[list[str]]:
    """The messages that reach a handler of ``logger_name`` (at INFO) inside the block."""
    logger = logging.getLogger(logger_name)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("pytorch_lightning.utilities.rank_zero", logging.INFO, __file__, 1, message, None, None)


def test_device_lines_pass_once_other_lines_always():
    drop = _DropRepeats(("GPU available:", "TPU available:"))
    assert drop.filter(_record("GPU available: False, used: False"))
    assert not drop.filter(_record("GPU available: False, used: False"))
    assert drop.filter(_record("GPU available: True (cuda), used: True"))  # a different answer shows
    assert drop.filter(_record("`Trainer.fit` stopped: `max_epochs=4` reached."))
    assert drop.filter(_record("`Trainer.fit` stopped: `max_epochs=4` reached."))


def test_a_second_trainer_does_not_list_the_devices_again():
    quiet_dependencies()
    quiet_dependencies()  # idempotent: one filter of each kind
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert sum(isinstance(f, _DropRepeats) for f in logger.filters) == 1
    with _captured("pytorch_lightning.utilities.rank_zero") as seen:
        for _ in range(2):
            pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                       enable_progress_bar=False, enable_model_summary=False)
    # At most once in this process (an earlier test's Trainer may have shown it already).
    assert sum(m.startswith("GPU available:") for m in seen) <= 1
    assert sum(m.startswith("TPU available:") for m in seen) <= 1


def _shown(logger_name: str, messages: list[str]) -> list[str]:
    """What reaches a handler of ``logger_name`` when each message is logged there at INFO."""
    with _captured(logger_name) as seen:
        for message in messages:
            logging.getLogger(logger_name).info(message)
    return seen


def test_dependency_info_lines_every_run_printed_are_dropped_and_nothing_else():
    quiet_dependencies()
    kept = "Registered model 'glassworks-best' already exists."
    assert _shown("mlflow.pyfunc", ["Validating input example against model signature", kept]) == [kept]
    monitor = "mlflow.system_metrics.system_metrics_monitor"
    assert _shown(monitor, ["Started monitoring system metrics.", "Stopping system metrics monitoring...",
                            "Successfully terminated system metrics monitoring!",
                            "Skip logging GPU metrics. Set logger level to DEBUG for more details.",
                            "Failed to log system metrics: disk full"]) == ["Failed to log system metrics: disk full"]
    stopped = "`Trainer.fit` stopped: `max_epochs=4` reached."
    assert _shown("pytorch_lightning.utilities.rank_zero",
                  ["Loading `train_dataloader` to estimate number of stepping batches.", stopped,
                   "\nDetected KeyboardInterrupt, attempting graceful shutdown ..."]) == [stopped]
    # A machine without TPUs or HPUs is not told so; one with them is, and the GPU line always shows.
    tpu = "TPU available: True, using: 8 TPU cores"
    assert _shown("lightning_fabric.utilities.rank_zero",
                  ["TPU available: False, using: 0 TPU cores", "HPU available: False, using: 0 HPUs", tpu]) == [tpu]
