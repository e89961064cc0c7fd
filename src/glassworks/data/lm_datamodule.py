"""The LightningDataModule of the lm task: load an LM source, build the word vocabulary from
its symbols, encode every split once, serve right-padded batches with next-token targets.

A row is ``[BOS] prompt answer [EOS]`` (no [EOS] for a text corpus, whose blocks are cut
mid-text). Batches (T = longest row in the batch):

* ``input_ids`` (B, T) and ``attention_mask`` (B, T), 1 = token;
* ``targets`` (B, T): the token at t + 1 where position t carries loss, else -100;
* ``answer_mask`` (B, T) bool: positions whose next token is an answer token or the [EOS] that
  closes the answer (exact-match accuracy);
* ``context_mask`` (B, T) bool: prompt words, the tokens training may corrupt to [MASK].
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from glassworks.data.errors import DataError
from glassworks.data.lm_tasks import LM_SPLITS, LMData, LMExample
from glassworks.data.lm_vocab import WordVocab
from glassworks.data.sampler import ResumableTrainOrder
from glassworks.validation import ConfigError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # F.cross_entropy's default ignore_index


@dataclass
class EncodedLM:
    """One encoded example: ``ids`` = [BOS] prompt answer [EOS]?; the prompt is ids[:n_prompt]
    ([BOS] included), the answer ids[n_prompt : n_prompt + n_answer]."""

    ids: list[int]
    n_prompt: int
    n_answer: int


def encode_example(vocab: WordVocab, example: LMExample, append_eos: bool) -> EncodedLM:
    ids = vocab.encode_words(example.prompt) + vocab.encode_words(example.answer, bos=False)
    if append_eos:
        ids.append(vocab.eos_id)
    return EncodedLM(ids, 1 + len(example.prompt), len(example.answer))


class LMCollator:
    """Pads to the longest row of the batch; builds targets, answer and context masks."""

    def __init__(self, pad_id: int, loss_on: str, append_eos: bool) -> None:
        self.pad_id = pad_id
        self.loss_on = loss_on
        self.append_eos = append_eos

    def __call__(self, rows: list[EncodedLM]) -> dict[str, torch.Tensor]:
        B, T = len(rows), max(len(r.ids) for r in rows)
        ids = torch.full((B, T), self.pad_id, dtype=torch.long)  # (B, T)
        mask = torch.zeros(B, T, dtype=torch.long)  # (B, T)
        targets = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        answer = torch.zeros(B, T, dtype=torch.bool)  # (B, T)
        context = torch.zeros(B, T, dtype=torch.bool)  # (B, T)
        for b, r in enumerate(rows):
            n = len(r.ids)
            ids[b, :n] = torch.tensor(r.ids)
            mask[b, :n] = 1
            context[b, 1 : r.n_prompt] = True
            # Position t predicts token t + 1: the answer's first token is predicted at the
            # last prompt position; the closing [EOS] (if any) counts as part of the answer.
            first = r.n_prompt - 1
            last = first + r.n_answer + (1 if self.append_eos else 0)  # exclusive
            answer[b, first:last] = r.n_answer > 0
            start = 0 if self.loss_on == "all" else first
            stop = n - 1 if self.loss_on == "all" else last
            targets[b, start:stop] = ids[b, start + 1 : stop + 1]
        return {"input_ids": ids, "attention_mask": mask, "targets": targets,
                "answer_mask": answer, "context_mask": context}


class _Rows(Dataset):
    def __init__(self, rows: list[EncodedLM]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> EncodedLM:
        return self.rows[i]


def lm_data_digest(data: LMData) -> str:
    """sha256 over every split's examples (prompt, answer, evidence, foils), in split order."""
    h = hashlib.sha256()
    h.update(json.dumps([data.name, data.loss_on, data.append_eos]).encode("utf-8"))
    for split in LM_SPLITS:
        examples = data.splits[split]
        h.update(f"\n#split {split} {len(examples)}\n".encode("utf-8"))
        for e in examples:
            h.update(json.dumps([e.prompt, e.answer, e.evidence, e.foils], ensure_ascii=False).encode("utf-8"))
            h.update(b"\n")
    return h.hexdigest()


class LMDataModule(ResumableTrainOrder, pl.LightningDataModule):
    """Causal-LM data. Call :meth:`prepare` (idempotent) before the MLflow run so bad data fails
    fast; Lightning's :meth:`setup` calls it too. ``max_length`` bounds a row, [BOS] and [EOS]
    included; a longer row fails with the split and row named."""

    def __init__(self, source: Any, batch_size: int, max_length: int = 64, num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__()
        if not callable(getattr(source, "load", None)):
            raise ConfigError("source", f"must have a load() method, got {type(source).__name__}")
        for key, value, low in (("max_length", max_length, 2), ("batch_size", batch_size, 1),
                                ("num_workers", num_workers, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(key, f"must be an integer >= {low}, got {value!r}")
        self.source = source
        self.batch_size = batch_size
        self.max_length = max_length
        self.num_workers = num_workers
        self.seed = seed
        self._data: LMData | None = None
        self._vocab: WordVocab | None = None
        self._encoded: dict[str, list[EncodedLM]] = {}
        self._digest: str | None = None

    def prepare(self) -> None:
        if self._data is not None:
            return
        data = self.source.load()
        for split in LM_SPLITS:
            if not data.splits.get(split):
                raise DataError("split is empty", origin=data.source, key=split)
        vocab = WordVocab.from_symbols(data.symbols)
        encoded = {}
        for split in LM_SPLITS:
            rows = [encode_example(vocab, e, data.append_eos) for e in data.splits[split]]
            for i, r in enumerate(rows):
                if len(r.ids) > self.max_length:
                    raise DataError(
                        f"example has {len(r.ids)} tokens with [BOS]/[EOS], more than "
                        f"data.max_length={self.max_length}", origin=data.source, key=split, row=i + 1)
            encoded[split] = rows
        self._vocab, self._encoded = vocab, encoded
        self._digest = lm_data_digest(data)
        self._data = data
        logger.info("%s: %s examples, vocabulary %d", data.name,
                    {s: len(v) for s, v in encoded.items()}, len(vocab))

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _require(self) -> LMData:
        if self._data is None:
            raise RuntimeError("LMDataModule: call prepare() first")
        return self._data

    @property
    def vocab(self) -> WordVocab:
        self._require()
        assert self._vocab is not None
        return self._vocab

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def digest(self) -> str:
        self._require()
        assert self._digest is not None
        return self._digest

    @property
    def data(self) -> LMData:
        return self._require()

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._require().name

    @property
    def source_uri(self) -> str:
        return self._require().source

    @property
    def has_evidence(self) -> bool:
        return self._require().has_evidence

    # What the stages read from any datamodule (run tags, dataset inputs, data stats, the
    # tokenizer artifact); the lm task's "label" is the reference answer and it has no classes.
    @property
    def tokenizer(self) -> WordVocab:
        return self.vocab

    @property
    def label_names(self) -> list[str]:
        return []

    @property
    def stats(self) -> dict[str, Any]:
        data = self._require()
        return {"splits": {s: len(data.splits[s]) for s in LM_SPLITS}, "vocab_size": len(self.vocab),
                "has_evidence": data.has_evidence, "loss_on": data.loss_on}

    def split_frame(self, split: str) -> pd.DataFrame:
        """One row per example: ``text`` (the prompt) and ``label`` (the reference answer), words
        joined by spaces."""
        rows = self.examples(split)
        return pd.DataFrame({"text": [" ".join(e.prompt) for e in rows],
                             "label": [" ".join(e.answer) for e in rows]})

    def examples(self, split: str) -> list[LMExample]:
        return self._require().splits[split]

    def encoded(self, split: str) -> list[EncodedLM]:
        self._require()
        return self._encoded[split]

    def collator(self) -> LMCollator:
        data = self._require()
        return LMCollator(self.vocab.pad_id, data.loss_on, data.append_eos)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        rows = _Rows(self.encoded(split))
        args = {"collate_fn": self.collator(), "num_workers": self.num_workers,
                "persistent_workers": self.num_workers > 0}
        if shuffle:  # resumable mid-epoch (ResumableTrainOrder)
            return self.train_loader(rows, **args)
        return DataLoader(rows, batch_size=self.batch_size, **args)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
