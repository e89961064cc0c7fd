"""A pretrained model's own tokenizer behind :class:`TextTokenizer`'s interface.

With ``model=hf``/``model=minilm`` the data is tokenised by the model's tokenizer (nothing is
trained): the model config hands the DataModule a :class:`PretrainedTokenizerConfig`. Special
tokens and their ids come from the tokenizer ([CLS]/[SEP]/[PAD]/[MASK] for BERT), never from
fixed numbers. Every encoding starts with the tokenizer's first special token (BERT's [CLS],
what the classifier reads) and keeps its trailing ones ([SEP]) when truncated.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tokenizers import Tokenizer

from glassworks.data.tokenizer import META_FILE, Encoded, TextTokenizer, _word_ids
from glassworks.validation import Validated

logger = logging.getLogger(__name__)

KIND = "pretrained"
_FORMAT_VERSION = 1


@dataclass
class PretrainedTokenizerConfig(Validated):
    """The tokenizer of ``pretrained`` (a folder, ``package:<module>`` or hub id).
    ``mask_token``: what explanations put in hidden positions when the tokenizer has no mask
    token (null: its mask token, else its unknown token)."""

    pretrained: str
    mask_token: str | None = None

    @property
    def lowercase(self) -> bool:
        # Only used to spot duplicate texts across splits; the tokenizer normalises on its own.
        return False

    def build(self, texts: Iterable[str] | None = None) -> PretrainedTokenizer:
        """Load (never train) the tokenizer; ``texts`` is ignored."""
        from transformers import AutoTokenizer

        from glassworks.hub import offline_when_unreachable
        from glassworks.models.hf_encoder import resolve_pretrained

        where = resolve_pretrained(self.pretrained)
        with offline_when_unreachable(f"the tokenizer of {self.pretrained}", where):
            hf = AutoTokenizer.from_pretrained(where, local_files_only=Path(where).is_dir())
        return PretrainedTokenizer(hf, self.pretrained, self.mask_token)


class PretrainedTokenizer:
    """A fast Hugging Face tokenizer with TextTokenizer's methods (encode, encode_batch,
    encode_ids, pad/unk/cls/mask ids, save/load). Picklable."""

    def __init__(self, hf_tokenizer: Any, pretrained: str, mask_token: str | None = None) -> None:
        if not getattr(hf_tokenizer, "is_fast", False):
            raise ValueError(f"{pretrained}: needs a fast tokenizer (tokenizer.json), got "
                             f"{type(hf_tokenizer).__name__}")
        self.hf = hf_tokenizer
        self.pretrained = pretrained
        self.mask_token = mask_token
        # A copy without the tokenizer.json's own truncation/padding: we truncate ourselves so
        # the trailing [SEP] survives and the untruncated length stays known.
        self._tok = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
        self._tok.no_truncation()
        self._tok.no_padding()
        probe = self._tok.encode("a")
        if not probe.special_tokens_mask or probe.special_tokens_mask[0] != 1:
            raise ValueError(f"{pretrained}: tokenizer adds no leading special token ([CLS]) for "
                             "the classifier to read")
        self._n_trailing = _trailing_specials(probe.special_tokens_mask)
        for name in ("pad", "unk"):
            if getattr(hf_tokenizer, f"{name}_token_id") is None:
                raise ValueError(f"{pretrained}: tokenizer has no {name} token")

    # ---- specials -------------------------------------------------------------------------
    @property
    def backend(self) -> Tokenizer:
        return self._tok

    @property
    def pad_id(self) -> int:
        return int(self.hf.pad_token_id)

    @property
    def unk_id(self) -> int:
        return int(self.hf.unk_token_id)

    @property
    def cls_id(self) -> int:
        return int(self._tok.encode("a").ids[0])

    @property
    def mask_id(self) -> int:
        if self.mask_token is not None:
            i = self._tok.token_to_id(self.mask_token)
            if i is None:
                raise ValueError(f"mask_token: {self.mask_token!r} is not in the tokenizer's vocabulary")
            return int(i)
        if self.hf.mask_token_id is not None:
            return int(self.hf.mask_token_id)
        return self.unk_id

    @property
    def special_ids(self) -> set[int]:
        return {int(i) for i in self.hf.all_special_ids}

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def whole_word_ids(self) -> list[int]:
        """Ids of vocabulary entries that are whole words: no continuation piece ("##ing"), no
        special or reserved token ("[unused3]"). The substitution attack's candidates."""
        prefix = getattr(getattr(self._tok, "model", None), "continuing_subword_prefix", None) or "##"
        specials = self.special_ids | {self.unk_id, self.mask_id}
        return sorted(i for tok, i in self._tok.get_vocab(with_added_tokens=False).items()
                      if i not in specials and not tok.startswith(prefix)
                      and not (tok.startswith("[") and tok.endswith("]")) and any(c.isalnum() for c in tok))

    # ---- encoding -------------------------------------------------------------------------
    def _keep(self, n: int, max_length: int | None) -> list[int]:
        """Indices kept of an encoding of n tokens: the head, then the trailing specials."""
        if max_length is None or n <= max_length:
            return list(range(n))
        if max_length < 1 + self._n_trailing:
            raise ValueError(f"max_length must be >= {1 + self._n_trailing} (room for the special "
                             f"tokens), got {max_length}")
        head = max_length - self._n_trailing
        return list(range(head)) + list(range(n - self._n_trailing, n))

    def _to_encoded(self, text: str, enc: Any, max_length: int | None) -> Encoded:
        keep = self._keep(len(enc.ids), max_length)
        specials = enc.special_tokens_mask
        offsets = [(0, 0) if specials[i] else tuple(enc.offsets[i]) for i in keep]
        return Encoded([enc.ids[i] for i in keep], [enc.tokens[i] for i in keep], offsets,
                       _word_ids(text, offsets))

    def encode(self, text: str, max_length: int | None = None) -> Encoded:
        """Encode one text; at most ``max_length`` tokens, [CLS] and [SEP] included."""
        return self._to_encoded(text, self._tok.encode(text), max_length)

    def encode_batch(self, texts: list[str], max_length: int | None = None) -> list[Encoded]:
        encs = self._tok.encode_batch(list(texts))
        return [self._to_encoded(t, e, max_length) for t, e in zip(texts, encs)]

    def encode_ids(self, texts: list[str], max_length: int | None = None
                   ) -> tuple[list[list[int]], list[int]]:
        """(truncated ids per text, untruncated token count per text)."""
        encs = self._tok.encode_batch(list(texts))
        ids = [[e.ids[i] for i in self._keep(len(e.ids), max_length)] for e in encs]
        return ids, [len(e.ids) for e in encs]

    def id_to_token(self, i: int) -> str:
        tok = self._tok.id_to_token(i)
        if tok is None:
            raise KeyError(f"token id {i} is outside the vocabulary (size {self.vocab_size})")
        return tok

    def token_to_id(self, token: str) -> int:
        i = self._tok.token_to_id(token)
        return self.unk_id if i is None else i

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    # ---- files ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """``save_pretrained`` files plus ``tokenizer_meta.json`` (kind, source, mask token)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(str(d))
        meta = {"format_version": _FORMAT_VERSION, "kind": KIND, "pretrained": self.pretrained,
                "mask_token": self.mask_token, "vocab_size": self.vocab_size}
        (d / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> PretrainedTokenizer:
        from transformers import AutoTokenizer

        d = Path(directory)
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
        if meta.get("kind") != KIND or meta.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{d / META_FILE}: not a pretrained tokenizer of format {_FORMAT_VERSION}")
        hf = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        return cls(hf, str(meta["pretrained"]), meta.get("mask_token"))


def _trailing_specials(mask: list[int]) -> int:
    n = 0
    for bit in reversed(mask):
        if not bit:
            break
        n += 1
    return n


def load_tokenizer(directory: str | Path) -> TextTokenizer | PretrainedTokenizer:
    """Whichever tokenizer ``save`` wrote into ``directory`` (trained or pretrained)."""
    d = Path(directory)
    meta_path = d / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: no tokenizer here")
    kind = json.loads(meta_path.read_text(encoding="utf-8")).get("kind")
    return PretrainedTokenizer.load(d) if kind == KIND else TextTokenizer.load(d)
