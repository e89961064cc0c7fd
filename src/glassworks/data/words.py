"""What glassworks calls a word: the unit of a rationale, of an explanation's word view and of a
token's word id. A run of non-space characters, as ``str.split()`` sees it, except that every
character of the scripts written without spaces between words (Chinese, Japanese kanji and kana)
is a word of its own, as BERT's tokenizer treats CJK ideographs: without that a Chinese sentence
is one "word", a word-level vocabulary of whole sentences, and a model at chance."""

from __future__ import annotations

import re

# Hiragana and katakana, CJK extension A, the unified ideographs, compatibility ideographs, and
# the supplementary planes' ideographs (extensions B-F and the compatibility supplement).
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_WORD = re.compile(f"[{CJK}]|[^\\s{CJK}]+")


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each word of `text`, in order."""
    return [m.span() for m in _WORD.finditer(text)]


def words(text: str) -> list[str]:
    """The words of `text`: ``text.split()`` for text without CJK characters."""
    return _WORD.findall(text)
