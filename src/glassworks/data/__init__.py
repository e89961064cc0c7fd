"""Data: sources (synthetic, local files, Hugging Face hub), shared validation, tokenizers and
the Lightning DataModule.

The names below are imported on first use (PEP 562): ``glassworks.data.synthetic`` or
``glassworks.data.errors`` alone do not pull in Lightning (the test suite's fork-server client,
which xdist's controller imports before it starts any worker, needs only the synthetic words).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> the submodule that defines it
_EXPORTS = {
    "PadCollator": "datamodule",
    "TextDataModule": "datamodule",
    "DataError": "errors",
    "token_rationale": "rationale",
    "DataSource": "sources",
    "FilesSource": "sources",
    "HubSource": "sources",
    "SyntheticSource": "sources",
    "Encoded": "tokenizer",
    "TextTokenizer": "tokenizer",
    "TokenizerConfig": "tokenizer",
    "LoadedData": "validation",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from glassworks.data.datamodule import PadCollator, TextDataModule
    from glassworks.data.errors import DataError
    from glassworks.data.rationale import token_rationale
    from glassworks.data.sources import DataSource, FilesSource, HubSource, SyntheticSource
    from glassworks.data.tokenizer import Encoded, TextTokenizer, TokenizerConfig
    from glassworks.data.validation import LoadedData


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'glassworks.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"glassworks.data.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
