"""The console filters: dependency chatter shown once or not at all, everything else untouched."""

from __future__ import annotations

import logging

import pytorch_lightning as pl

from glassworks.console import _DropRepeats, quiet_dependencies


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
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        for _ in range(2):
            pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                       enable_progress_bar=False, enable_model_summary=False)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    # At most once in this process (an earlier test's Trainer may have shown it already).
    assert sum(m.startswith("GPU available:") for m in seen) <= 1
    assert sum(m.startswith("TPU available:") for m in seen) <= 1
