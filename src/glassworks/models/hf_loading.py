"""Loading and saving Hugging Face weights without transformers' console output.

transformers 5 draws a progress bar per load ("Loading weights") and per save ("Writing model
shards"), and logs a LOAD REPORT table (with terminal escape codes, also in log files) whenever a
checkpoint and the model differ: on every fine-tuning run, to say that the new classification head
starts at random, which is the point of fine-tuning. :func:`quiet_transformers` turns those off
around our own loads and saves; :func:`report_load` says what the report said in one line each,
and warns when a weight of the pretrained body itself was missing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import nn

log = logging.getLogger("glassworks.models")


class _NoLoadReport(logging.Filter):
    """Drops transformers' LOAD REPORT record. A filter, not a level: transformers checks its
    tensor-parallel plan (and warns about every layer it did not shard) when that logger's level is
    WARNING or above."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' progress bars and load report off inside the block (errors still raise)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    logger = logging.getLogger("transformers.modeling_utils")  # the one loading_report logs to
    drop = _NoLoadReport()
    hf_logging.disable_progress_bar()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)
        if bars:
            hf_logging.enable_progress_bar()


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def report_load(net: nn.Module, info: Mapping[str, Any], where: str, new_head: bool) -> None:
    """Log what a ``from_pretrained(..., output_loading_info=True)`` did not take from the
    checkpoint at `where`. With `new_head`, weights outside the pretrained body (``net``'s
    ``base_model_prefix``) are the task's new head; a missing weight of the body is a warning."""
    prefix = getattr(net, "base_model_prefix", "")
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k[0]) for k in info.get("mismatched_keys") or [])
    unexpected = sorted(info.get("unexpected_keys") or [])

    def in_head(key: str) -> bool:
        return new_head and bool(prefix) and not key.startswith(f"{prefix}.")

    head = [k for k in [*missing, *mismatched] if in_head(k)]
    absent = [k for k in missing if not in_head(k)]
    reshaped = [k for k in mismatched if not in_head(k)]
    if head:
        log.info("%s: the classification head (%s) is new: it starts at random and this run trains it",
                 where, _few(head))
    if absent:
        log.warning("%s: %d weights of the pretrained model are not in its checkpoint and start at random: %s",
                    where, len(absent), _few(absent))
    if reshaped:
        log.warning("%s: weights whose shape differs from the checkpoint's start at random: %s",
                    where, _few(reshaped))
    if unexpected:
        log.info("%s: %d checkpoint weights this model does not use (e.g. a pretraining head): %s",
                 where, len(unexpected), _few(unexpected))
