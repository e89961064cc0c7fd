"""Data: sources (synthetic, local files, Hugging Face hub), shared validation, tokenizers and
the Lightning DataModule."""

from glassworks.data.datamodule import PadCollator, TextDataModule
from glassworks.data.errors import DataError
from glassworks.data.rationale import token_rationale
from glassworks.data.sources import DataSource, FilesSource, HubSource, SyntheticSource
from glassworks.data.tokenizer import Encoded, TextTokenizer, TokenizerConfig
from glassworks.data.validation import LoadedData

__all__ = [
    "DataError",
    "DataSource",
    "Encoded",
    "FilesSource",
    "HubSource",
    "LoadedData",
    "PadCollator",
    "SyntheticSource",
    "TextDataModule",
    "TextTokenizer",
    "TokenizerConfig",
    "token_rationale",
]
