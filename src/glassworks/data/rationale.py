"""Word-level ground-truth rationales projected onto tokens."""

from __future__ import annotations


def token_rationale(word_rationale: list[int], word_ids: list[int | None]) -> list[int]:
    """Per-token 0/1: a token inherits the mark of the whitespace word it comes from; [CLS] and
    other specials (word id None) get 0. An empty ``word_rationale`` (data without rationales)
    gives an empty list."""
    if not word_rationale:
        return []
    out: list[int] = []
    for w in word_ids:
        if w is None:
            out.append(0)
        elif 0 <= w < len(word_rationale):
            out.append(int(word_rationale[w]))
        else:
            raise IndexError(
                f"word id {w} outside the rationale ({len(word_rationale)} words): the rationale "
                "and the encoding come from different texts"
            )
    return out
