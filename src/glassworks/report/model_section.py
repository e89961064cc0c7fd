"""The run report's Model section, from the run's ``contract.MODEL_SUMMARY``."""

from __future__ import annotations

from typing import Any

from glassworks.report.collect import RunRecord
from glassworks.report.document import KeyValues, Section, fmt
from glassworks.tracking import contract as C

_ROWS = (("base_model", "base model"), ("class", "architecture"), ("layers", "layers"),
         ("heads", "attention heads"), ("parameters", "parameters"),
         ("trainable_parameters", "trainable"), ("frozen_parameters", "frozen"),
         ("tokenizer", "tokenizer"), ("vocab_size", "vocabulary"), ("max_length", "max length (tokens)"))


def model_section(record: RunRecord) -> Section | None:
    """None for runs logged before the summary existed."""
    summary: Any = record.artifacts.json(C.MODEL_SUMMARY) if record.artifacts else None
    if not summary:
        return None
    items = [(label, fmt(summary[key]) if isinstance(summary[key], (int, float)) else str(summary[key]))
             for key, label in _ROWS if key in summary]
    return Section("model", "Model", [KeyValues(items)])
