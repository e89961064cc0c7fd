"""A word-level vocabulary for language-model tasks: words (data/words.py), fixed specials.

The synthetic LM tasks are sequences of symbols, so tokens are the whitespace words of the text
and every symbol of a task is in the vocabulary, whether or not the train split happens to use
it. Saved as one JSON file (no pickles), so the pyfunc model and the explain stage rebuild it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from glassworks.data.words import words

PAD, UNK, BOS, MASK, EOS = "[PAD]", "[UNK]", "[BOS]", "[MASK]", "[EOS]"
# ids 0..4 in this order; [MASK] = 3 as in the classifier tokenizer, so masking code agrees.
LM_SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, MASK, EOS)
VOCAB_FILE = "vocab.json"
_FORMAT_VERSION = 1


class WordVocab:
    """Token <-> id over words; unknown words map to [UNK]."""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tuple(tokens[: len(LM_SPECIAL_TOKENS)]) != LM_SPECIAL_TOKENS:
            raise ValueError(
                f"vocabulary must start with the special tokens {list(LM_SPECIAL_TOKENS)}, "
                f"got {tokens[: len(LM_SPECIAL_TOKENS)]}"
            )
        if len(set(tokens)) != len(tokens):
            dup = sorted(t for t, n in Counter(tokens).items() if n > 1)
            raise ValueError(f"vocabulary: duplicate tokens {dup[:5]}")
        bad = [t for t in tokens if not t or any(c.isspace() for c in t)]
        if bad:
            raise ValueError(f"vocabulary: tokens must be non-empty words without spaces, got {bad[:3]!r}")
        self.tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def from_symbols(cls, symbols: Iterable[str]) -> WordVocab:
        """Specials, then the symbols in first-seen order (deterministic ids)."""
        out = list(LM_SPECIAL_TOKENS)
        seen = set(out)
        for s in symbols:
            if s not in seen:
                seen.add(s)
                out.append(s)
        return cls(out)

    @classmethod
    def from_texts(cls, texts: Iterable[str], max_size: int, min_frequency: int) -> WordVocab:
        """The most frequent words of ``texts`` (ties by first occurrence), specials first."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(words(text))
        room = max_size - len(LM_SPECIAL_TOKENS)
        frequent = [w for w, n in counts.most_common() if n >= min_frequency and w not in LM_SPECIAL_TOKENS]
        return cls.from_symbols(frequent[:room])

    @property
    def vocab_size(self) -> int:
        """As the classifier tokenizers name it (the run's model summary reads it)."""
        return len(self)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def bos_id(self) -> int:
        return 2

    @property
    def mask_id(self) -> int:
        return 3

    @property
    def eos_id(self) -> int:
        return 4

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(range(len(LM_SPECIAL_TOKENS)))

    def token_to_id(self, token: str) -> int:
        return self._ids.get(token, self.unk_id)

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < len(self.tokens):
            raise KeyError(f"token id {i} is outside the vocabulary (size {len(self.tokens)})")
        return self.tokens[i]

    def encode_words(self, words: Sequence[str], bos: bool = True) -> list[int]:
        ids = [self.token_to_id(w) for w in words]
        return [self.bos_id, *ids] if bos else ids

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """[BOS] + one id per word of ``text`` (data/words.py: whitespace words, CJK characters)."""
        return self.encode_words(words(text), bos=bos)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        specials = self.special_ids if skip_special_tokens else frozenset()
        return " ".join(self.tokens[i] for i in ids if i not in specials)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        path = d / VOCAB_FILE
        path.write_text(
            json.dumps({"format_version": _FORMAT_VERSION, "tokens": self.tokens}, ensure_ascii=False),
            encoding="utf-8",
        )
        return path

    @classmethod
    def load(cls, directory: str | Path) -> WordVocab:
        path = Path(directory) / VOCAB_FILE
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported format_version {meta.get('format_version')}")
        return cls(meta["tokens"])
