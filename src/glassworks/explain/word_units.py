"""Word-level view of token attributions: wordpieces ("un", "##believ", "##able") aggregate to the
whitespace word they came from, the unit of a rationale and of what a reader sees.

Scores are summed, so additive methods stay additive: SHAP's local accuracy (sum of scores +
base value = model output) holds for the word scores of every example, because the special
tokens ([CLS], [SEP]) carry no SHAP value. ``word_ids[i]`` is the index into ``words(text)``
(data/words.py: whitespace words, CJK characters one by one) of token i, None for special tokens
(``Encoded.word_ids``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from glassworks.data.words import words
from glassworks.explain.metrics import average_precision
from glassworks.explain.types import ExampleInput, Explanation


def word_positions(word_ids: Sequence[int | None]) -> list[list[int]]:
    """Token positions of each word, in word order (words with no token, e.g. cut off by
    truncation, are left out)."""
    groups: dict[int, list[int]] = {}
    for pos, w in enumerate(word_ids):
        if w is not None:
            groups.setdefault(int(w), []).append(pos)
    return [groups[w] for w in sorted(groups)]


def word_scores(scores: np.ndarray, word_ids: Sequence[int | None]) -> np.ndarray:
    """(W,) sum of the (T,) token scores of each word."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(word_ids):
        raise ValueError(f"word_scores: {len(scores)} scores for {len(word_ids)} word ids")
    return np.array([scores[p].sum() for p in word_positions(word_ids)], dtype=np.float64)


def word_rationale(rationale: Sequence[int], word_ids: Sequence[int | None]) -> np.ndarray:
    """(W,) 0/1 per word: a word is rationale when its tokens are (they inherit the word's mark)."""
    r = np.asarray(rationale, dtype=np.int64)
    return np.array([int(r[p].max()) for p in word_positions(word_ids)], dtype=np.int64)


def word_indices(word_ids: Sequence[int | None], n_tokens: int) -> list[int | None]:
    """The word index column of the attribution table (None for specials or unknown)."""
    return list(word_ids) if len(word_ids) == n_tokens else [None] * n_tokens


def word_plausibility(
    explanations: Sequence[Explanation], examples: Sequence[ExampleInput]
) -> dict[str, float]:
    """``word_rationale_auprc`` / ``word_rationale_f1``: :func:`metrics.plausibility` computed on
    word scores against word rationales. ``{}`` when no example has word ids and a rationale."""
    by_id = {e.example_id: e for e in explanations}
    auprc, f1 = [], []
    for ex in examples:
        expl = by_id.get(ex.example_id)
        if expl is None or ex.word_ids is None or ex.rationale is None:
            continue
        truth = word_rationale(ex.rationale, ex.word_ids)  # (W,)
        if truth.sum() == 0:
            continue
        scores = word_scores(expl.scores, ex.word_ids)  # (W,)
        if not np.all(np.isfinite(scores)):
            continue
        auprc.append(average_precision(truth, scores))
        k = int(truth.sum())
        top = np.argsort(-scores, kind="stable")[:k]
        f1.append(float(truth[top].sum()) / k)
    if not auprc:
        return {}
    return {"word_rationale_auprc": float(np.mean(auprc)), "word_rationale_f1": float(np.mean(f1))}


def tokens_are_words(word_ids: Sequence[int | None] | None) -> bool:
    """True when every token after [CLS] is a whole word of its own (a word-level tokenizer): the
    token view is already the word view. Also True without word ids (nothing to aggregate)."""
    if word_ids is None:
        return True
    return list(word_ids) == [None, *range(len(word_ids) - 1)]


@dataclass
class WordView:
    """An example as [CLS] + its words, for the pages: ``tokens`` (1+W,), ``scores`` (1+W,) with
    [CLS]'s own score first (the colour scale leaves position 0 out) and each word's summed
    token scores after it, ``rationale`` (1+W,) 0/1 or None. Other specials ([SEP]) are left out."""

    tokens: list[str]
    scores: np.ndarray
    rationale: list[int] | None


def word_view(example: ExampleInput, scores: np.ndarray) -> WordView:
    """The word view of one method's (T,) `scores` on `example` (words from ``words(text)``)."""
    scores = np.asarray(scores, dtype=np.float64)  # (T,)
    if example.word_ids is None or len(example.word_ids) != len(scores):
        return WordView(list(example.tokens), scores, list(example.rationale) if example.rationale else None)
    text_words = words(example.text)
    kept = sorted({int(w) for w in example.word_ids if w is not None})
    shown = [text_words[w] if w < len(text_words) else str(w) for w in kept]
    rationale = None
    if example.rationale is not None and len(example.rationale) == len(scores):
        rationale = [0, *word_rationale(example.rationale, example.word_ids).tolist()]
    return WordView([str(example.tokens[0]), *shown],
                    np.concatenate([scores[:1], word_scores(scores, example.word_ids)]), rationale)


def word_label(pieces: Sequence[str]) -> str:
    """A word's text rebuilt from its tokens: wordpiece "##" continuations joined, the word-start
    markers of SentencePiece ("\u2581") and byte-level BPE ("\u0120") dropped."""
    out = []
    for i, piece in enumerate(str(p) for p in pieces):
        if i and piece.startswith("##"):
            piece = piece[2:]
        out.append(piece.lstrip("\u2581\u0120"))
    return "".join(out) or "".join(str(p) for p in pieces)


def local_accuracy_gap(explanation: Explanation, example: ExampleInput) -> float:
    """|sum(word scores) + base value - model output| of an additive explanation (NaN without a
    base value): 0 up to float error when specials carry no score."""
    if explanation.base_value is None or example.word_ids is None:
        return math.nan
    total = word_scores(explanation.scores, example.word_ids).sum() + explanation.base_value
    explained = explanation.extras.get("explained_output", explanation.model_output)
    return abs(float(total) - float(explained))
