"""The LightningDataModule: load + validate a source, train the tokenizer on train, tokenise
every split once, and serve dynamically padded batches."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import pytorch_lightning as pl
import torch
from datasets import Dataset, DatasetDict
from torch.utils.data import DataLoader

from glassworks.data.pretrained_tokenizer import PretrainedTokenizer, PretrainedTokenizerConfig
from glassworks.data.sampler import ResumableTrainOrder
from glassworks.data.sources import DataSource
from glassworks.data.tokenizer import TextTokenizer, TokenizerConfig
from glassworks.data.validation import SPLITS, LoadedData
from glassworks.validation import ConfigError

logger = logging.getLogger(__name__)

# A validation split with more [UNK] tokens than this is warned about: real English text measured
# 7-12% at min_frequency 2 (data/stats.json's unk_rate), Thai without a subword vocabulary 100%.
UNK_RATE_WARNING = 0.25


class PadCollator:
    """Pads a list of examples to the longest one in the batch (not to max_length): short
    batches stay short, which is most of the speed of small-model training."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(r["input_ids"]) for r in rows]
        t = max(lengths)
        ids = [list(r["input_ids"]) + [self.pad_id] * (t - n) for r, n in zip(rows, lengths)]
        mask = [[1] * n + [0] * (t - n) for n in lengths]
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),  # (B, T)
            "attention_mask": torch.tensor(mask, dtype=torch.long),  # (B, T), 1 = token
            "labels": torch.tensor([int(r["label"]) for r in rows], dtype=torch.long),  # (B,)
        }


class _TokenizeBatch:
    """``Dataset.map`` function; a class rather than a closure so it pickles and hashes."""

    def __init__(self, tokenizer: TextTokenizer | PretrainedTokenizer, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        ids, full = self.tokenizer.encode_ids(batch["text"], self.max_length)
        unk, specials = self.tokenizer.unk_id, set(self.tokenizer.special_ids) - {self.tokenizer.unk_id}
        return {"input_ids": ids, "n_tokens": full,
                # per text: its kept tokens that are [UNK], and those that are not special tokens
                "n_unk": [row.count(unk) for row in ids],
                "n_text_tokens": [sum(i not in specials for i in row) for row in ids]}


def column(ds: Dataset, name: str) -> list[Any]:
    """A split's column as a list, read in one piece. ``ds[name]`` is a lazy Column in datasets
    4+; iterating it formats one row at a time (~25 us a row: 0.27 s for the default 10 000
    training texts, paid once per column the data preparation reads)."""
    return ds[name][:]


def data_digest(splits: DatasetDict, label_names: list[str]) -> str:
    """sha256 over label names and every split's (text, label, rationale), in split order.
    JSON per row keeps the encoding unambiguous and stable across processes."""
    h = hashlib.sha256()
    h.update(json.dumps(label_names, ensure_ascii=False).encode("utf-8"))
    for split in SPLITS:
        ds = splits[split]
        h.update(f"\n#split {split} {len(ds)}\n".encode("utf-8"))
        for batch in ds.iter(batch_size=4096):
            for row in zip(batch["text"], batch["label"], batch["rationale"]):
                h.update(json.dumps(row, ensure_ascii=False).encode("utf-8"))
                h.update(b"\n")
    return h.hexdigest()


class TextDataModule(ResumableTrainOrder, pl.LightningDataModule):
    """Text classification data. Call :meth:`prepare` (idempotent) before the MLflow run so bad
    data fails fast; Lightning's :meth:`setup` calls it too. Batches: ``input_ids`` (B, T),
    ``attention_mask`` (B, T), ``labels`` (B,), all long, T = longest in the batch."""

    def __init__(
        self,
        source: DataSource,
        tokenizer: TokenizerConfig | PretrainedTokenizerConfig,
        max_length: int,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not callable(getattr(source, "load", None)):
            raise ConfigError("source", f"must have a load() method, got {type(source).__name__}")
        # A pretrained model brings its own tokenizer (the model config's tokenizer()).
        if not isinstance(tokenizer, (TokenizerConfig, PretrainedTokenizerConfig)):
            raise ConfigError(
                "tokenizer",
                f"expected TokenizerConfig or PretrainedTokenizerConfig, got {type(tokenizer).__name__}",
            )
        for key, value, low in (("max_length", max_length, 2), ("batch_size", batch_size, 1),
                                ("num_workers", num_workers, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(key, f"must be an integer >= {low}, got {value!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError("seed", f"must be an integer, got {seed!r}")
        self.source = source
        self.tokenizer_config = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._loaded: LoadedData | None = None
        self._tokenizer: TextTokenizer | PretrainedTokenizer | None = None
        self._encoded: dict[str, Dataset] = {}
        self._digest: str | None = None
        self._stats: dict[str, Any] = {}

    # ---- preparation -------------------------------------------------------------------

    def set_tokenizer(self, tokenizer: TokenizerConfig | PretrainedTokenizerConfig) -> None:
        """Replace ``data.tokenizer`` before :meth:`prepare`: a pretrained model brings its own."""
        if self._loaded is not None:
            raise RuntimeError("set_tokenizer: the data is already tokenised")
        if not isinstance(tokenizer, (TokenizerConfig, PretrainedTokenizerConfig)):
            raise ConfigError("tokenizer", f"expected a tokenizer config, got {type(tokenizer).__name__}")
        self.tokenizer_config = tokenizer

    def prepare(self) -> None:
        """Load, validate, train (or load a pretrained) tokenizer, tokenise once, fingerprint.
        Idempotent."""
        if self._loaded is not None:
            return
        import datasets

        loaded = self.source.load()
        digest = data_digest(loaded.splits, loaded.label_names)
        tokenizer = self.tokenizer_config.build(column(loaded.splits["train"], "text"))
        fn = _TokenizeBatch(tokenizer, self.max_length)
        tok_hash = hashlib.sha256(tokenizer.backend.to_str().encode("utf-8")).hexdigest()
        bars_were_on = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()  # library code: no progress bars on the user's stderr
        try:
            encoded = {}
            for split in SPLITS:
                # An explicit fingerprint spares datasets from hashing the tokenizer per split.
                fingerprint = hashlib.sha256(
                    f"{digest}:{split}:{tok_hash}:{self.max_length}:unk".encode()
                ).hexdigest()[:32]
                encoded[split] = loaded.splits[split].map(
                    fn, batched=True, batch_size=1000, remove_columns=["text", "rationale"],
                    new_fingerprint=fingerprint,
                )
        finally:
            if bars_were_on:
                datasets.enable_progress_bars()
        stats = self._compute_stats(loaded, encoded)
        self._loaded, self._tokenizer, self._digest, self._stats = loaded, tokenizer, digest, stats
        # Only what the loaders need, so batching does not format the raw text columns.
        self._encoded = {s: ds.select_columns(["input_ids", "label"]) for s, ds in encoded.items()}
        logger.info(
            "data %s ready: sizes %s, vocab %d, digest %s", loaded.name, stats["sizes"],
            tokenizer.vocab_size, digest[:12],
        )

    def _compute_stats(self, loaded: LoadedData, encoded: dict[str, Dataset]) -> dict[str, Any]:
        names = loaded.label_names
        sizes = {s: len(loaded.splits[s]) for s in SPLITS}
        class_counts = {}
        for s in SPLITS:
            counts = [0] * len(names)
            for y in column(loaded.splits[s], "label"):
                counts[y] += 1
            class_counts[s] = dict(zip(names, counts))
        n_tokens = {s: column(encoded[s], "n_tokens") for s in SPLITS}
        truncated = {s: sum(n > self.max_length for n in n_tokens[s]) for s in SPLITS}
        n_trunc = sum(truncated.values())
        if n_trunc:
            logger.warning(
                "%d texts are longer than max_length=%d tokens and get truncated (%s)",
                n_trunc, self.max_length, truncated,
            )

        def norm(text: str) -> str:
            text = " ".join(text.split())
            return text.lower() if self.tokenizer_config.lowercase else text

        # A validation/test text seen in an earlier split inflates the scores measured on it.
        seen = {norm(t) for t in column(loaded.splits["train"], "text")}
        dupes = {}
        for s in ("validation", "test"):
            texts = [norm(t) for t in column(loaded.splits[s], "text")]
            dupes[s] = sum(t in seen for t in texts)
            seen.update(texts)
        n_dupes = sum(dupes.values())
        if n_dupes:
            logger.warning(
                "%d validation/test texts also appear in an earlier split (%s)", n_dupes, dupes
            )
        # Words the tokenizer maps to [UNK] (unseen in training, rarer than min_frequency, or a
        # script the vocabulary lacks) are invisible to the model and to every explanation.
        unk_rates = {s: sum(column(encoded[s], "n_unk")) / max(1, sum(column(encoded[s], "n_text_tokens")))
                     for s in SPLITS}
        if unk_rates["validation"] > UNK_RATE_WARNING:
            logger.warning(
                "%.0f%% of the validation split's tokens are [UNK] (train %.0f%%): the model sees little of "
                "those texts%s", 100 * unk_rates["validation"], 100 * unk_rates["train"],
                "; a subword vocabulary (data.tokenizer.kind=bpe) or a lower data.tokenizer.min_frequency "
                "keeps more" if isinstance(self.tokenizer_config, TokenizerConfig) else
                "; the pretrained vocabulary does not cover this text")
        all_n = [n for s in SPLITS for n in n_tokens[s]]
        return {
            "unk_rate": unk_rates["validation"],
            "unk_rate_per_split": unk_rates,
            "sizes": sizes,
            "class_counts": class_counts,
            "n_truncated": n_trunc,
            "n_truncated_per_split": truncated,
            "n_duplicates_across_splits": n_dupes,
            "n_duplicates_per_split": dupes,
            "max_tokens": max(all_n),
            "mean_tokens": sum(all_n) / len(all_n),
        }

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _require(self) -> LoadedData:
        if self._loaded is None:
            raise RuntimeError("TextDataModule.prepare() has not been called yet")
        return self._loaded

    # ---- results of prepare() ----------------------------------------------------------

    @property
    def tokenizer(self) -> TextTokenizer | PretrainedTokenizer:
        self._require()
        assert self._tokenizer is not None
        return self._tokenizer

    @property
    def label_names(self) -> list[str]:
        return list(self._require().label_names)

    @property
    def n_classes(self) -> int:
        return len(self._require().label_names)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def digest(self) -> str:
        self._require()
        assert self._digest is not None
        return self._digest

    @property
    def stats(self) -> dict[str, Any]:
        self._require()
        return self._stats

    @property
    def splits(self) -> DatasetDict:
        return self._require().splits

    @property
    def has_rationales(self) -> bool:
        return self._require().has_rationales

    @property
    def name(self) -> str:  # type: ignore[override]  # LightningDataModule.name is a plain attr
        return self._require().name

    @property
    def source_uri(self) -> str:
        return self._require().source_uri

    def split_frame(self, split: str):
        """pandas DataFrame (text, label, rationale) of one split, for MLflow dataset logging."""
        import pandas as pd

        self._check_split(split)
        ds = self.splits[split]
        return pd.DataFrame(
            {"text": column(ds, "text"), "label": column(ds, "label"),
             "rationale": column(ds, "rationale")}
        )

    def token_ids(self, split: str) -> list[list[int]]:
        """Token ids per example of ``split`` ([CLS] first, truncated, unpadded)."""
        self._require()
        self._check_split(split)
        return column(self._encoded[split], "input_ids")

    @staticmethod
    def _check_split(split: str) -> None:
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")

    # ---- loaders -----------------------------------------------------------------------

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self._require()
        args = {"collate_fn": PadCollator(self.tokenizer.pad_id), "num_workers": self.num_workers,
                "persistent_workers": self.num_workers > 0}
        if shuffle:  # resumable mid-epoch (ResumableTrainOrder)
            return self.train_loader(self._encoded[split], **args)
        return DataLoader(self._encoded[split], batch_size=self.batch_size,
                          generator=torch.Generator().manual_seed(self.seed), **args)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
