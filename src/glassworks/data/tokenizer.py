"""Tokenizers trained on the train split (Hugging Face ``tokenizers``): word-level or BPE, with
[CLS] prepended and a map from every token back to the whitespace word of the original text."""

from __future__ import annotations

import bisect
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from glassworks.data.words import CJK, word_spans
from glassworks.validation import Validated

logger = logging.getLogger(__name__)

PAD, UNK, CLS, MASK = "[PAD]", "[UNK]", "[CLS]", "[MASK]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, MASK)  # ids 0..3, in this order
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "tokenizer_meta.json"
_FORMAT_VERSION = 1


@dataclass
class TokenizerConfig(Validated):
    """How to train the tokenizer on the train split."""

    kind: Literal["wordlevel", "bpe"] = "wordlevel"
    vocab_size: int = 8000
    min_frequency: int = 1
    lowercase: bool = True

    def validate(self) -> None:
        self.require(
            self.vocab_size > len(SPECIAL_TOKENS),
            "vocab_size",
            f"must exceed the {len(SPECIAL_TOKENS)} special tokens, got {self.vocab_size}",
        )
        self.require(
            self.min_frequency >= 1, "min_frequency", f"must be >= 1, got {self.min_frequency}"
        )

    def build(self, texts: Iterable[str]) -> "TextTokenizer":
        """The DataModule's tokenizer: trained on ``texts`` (the train split)."""
        return TextTokenizer.train(texts, self)


@dataclass
class Encoded:
    """One encoded text. ``offsets`` are char spans in the original text ([CLS]: (0, 0));
    ``word_ids[i]`` is the index into ``words(text)`` of token i (None for [CLS])."""

    ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]


def _word_ids(text: str, offsets: list[tuple[int, int]]) -> list[int | None]:
    # From char offsets, not the pre-tokenizer's word ids: Whitespace splits "great," into two
    # pre-tokens, but both belong to one word of the text (the rationale's unit, data/words.py).
    spans = word_spans(text)
    starts = [s for s, _ in spans]
    out: list[int | None] = []
    for start, end in offsets:
        if end <= start:
            out.append(None)
            continue
        w = bisect.bisect_right(starts, start) - 1
        out.append(w if w >= 0 and start < spans[w][1] else None)
    return out


class TextTokenizer:
    """A trained ``tokenizers.Tokenizer`` with fixed specials ([PAD]=0, [UNK]=1, [CLS]=2,
    [MASK]=3); every encoding starts with [CLS]. Picklable."""

    def __init__(self, tokenizer: Tokenizer, config: TokenizerConfig) -> None:
        for i, tok in enumerate(SPECIAL_TOKENS):
            got = tokenizer.token_to_id(tok)
            if got != i:
                raise ValueError(f"special token {tok} must have id {i}, has {got}")
        self._tok = tokenizer
        self.config = config

    @classmethod
    def train(cls, texts: Iterable[str], config: TokenizerConfig) -> "TextTokenizer":
        texts = list(texts)
        if not texts:
            raise ValueError("cannot train a tokenizer on no texts")
        if config.kind == "wordlevel":
            tok = Tokenizer(models.WordLevel(unk_token=UNK))
            trainer = trainers.WordLevelTrainer(
                vocab_size=config.vocab_size,
                min_frequency=config.min_frequency,
                special_tokens=list(SPECIAL_TOKENS),
                show_progress=False,
            )
        else:
            # "##" continuation prefix: tokens stay readable in explanations and WordPiece's
            # decoder glues them back into words.
            tok = Tokenizer(models.BPE(unk_token=UNK, continuing_subword_prefix="##"))
            trainer = trainers.BpeTrainer(
                vocab_size=config.vocab_size,
                min_frequency=config.min_frequency,
                special_tokens=list(SPECIAL_TOKENS),
                continuing_subword_prefix="##",
                show_progress=False,
            )
            tok.decoder = decoders.WordPiece(prefix="##")
        if config.lowercase:
            tok.normalizer = normalizers.Lowercase()
        # Words and punctuation, and each CJK character on its own (data/words.py): a Chinese
        # sentence is otherwise one pre-token, and a word-level vocabulary of whole sentences.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Whitespace(), pre_tokenizers.Split(Regex(f"[{CJK}]"), behavior="isolated")])
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        tok.post_processor = processors.TemplateProcessing(
            single=f"{CLS} $A", special_tokens=[(CLS, SPECIAL_TOKENS.index(CLS))]
        )
        out = cls(tok, config)
        logger.info("trained %s tokenizer: %d tokens", config.kind, out.vocab_size)
        return out

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` and ``tokenizer_meta.json`` into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(d / TOKENIZER_FILE))
        meta = {
            "format_version": _FORMAT_VERSION,
            "config": self.config.to_dict(),
            "special_tokens": list(SPECIAL_TOKENS),
            "vocab_size": self.vocab_size,
        }
        (d / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "TextTokenizer":
        d = Path(directory)
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format_version") != _FORMAT_VERSION:
            version = meta.get("format_version")
            raise ValueError(f"{d / META_FILE}: unsupported format_version {version}")
        return cls(Tokenizer.from_file(str(d / TOKENIZER_FILE)), TokenizerConfig(**meta["config"]))

    @property
    def backend(self) -> Tokenizer:
        return self._tok

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def cls_id(self) -> int:
        return 2

    @property
    def mask_id(self) -> int:
        return 3

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Ids of [PAD], [UNK], [CLS], [MASK]: never text, never a substitute in an attack."""
        return (self.pad_id, self.unk_id, self.cls_id, self.mask_id)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @staticmethod
    def _check_max_length(max_length: int | None) -> None:
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be >= 1 (room for [CLS]), got {max_length}")

    def _to_encoded(self, text: str, enc, max_length: int | None) -> Encoded:
        # Truncate by slicing rather than the backend's truncation: [CLS] is first so it
        # survives, and the untruncated length stays available to callers that count truncation.
        n = len(enc.ids) if max_length is None else min(len(enc.ids), max_length)
        offsets = [tuple(o) for o in enc.offsets[:n]]
        offsets[0] = (0, 0)
        word_ids = _word_ids(text, offsets)
        word_ids[0] = None
        return Encoded(list(enc.ids[:n]), list(enc.tokens[:n]), offsets, word_ids)

    def encode(self, text: str, max_length: int | None = None) -> Encoded:
        """Encode one text; keep at most ``max_length`` tokens, [CLS] included."""
        self._check_max_length(max_length)
        return self._to_encoded(text, self._tok.encode(text), max_length)

    def encode_batch(self, texts: list[str], max_length: int | None = None) -> list[Encoded]:
        self._check_max_length(max_length)
        encs = self._tok.encode_batch(list(texts))
        return [self._to_encoded(t, e, max_length) for t, e in zip(texts, encs)]

    def encode_ids(
        self, texts: list[str], max_length: int | None = None
    ) -> tuple[list[list[int]], list[int]]:
        """Fast path: (truncated ids per text, untruncated token count per text)."""
        self._check_max_length(max_length)
        encs = self._tok.encode_batch(list(texts))
        full = [len(e.ids) for e in encs]
        ids = [e.ids if max_length is None else e.ids[:max_length] for e in encs]
        return ids, full

    def id_to_token(self, i: int) -> str:
        tok = self._tok.id_to_token(i)
        if tok is None:
            raise KeyError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        return tok

    def token_to_id(self, token: str) -> int:
        """Id of ``token``; [UNK]'s id when the token is not in the vocabulary."""
        i = self._tok.token_to_id(token)
        return self.unk_id if i is None else i

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)
