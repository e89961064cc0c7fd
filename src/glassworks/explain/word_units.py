"""Word-level view of token attributions: wordpieces ("un", "##believ", "##able") aggregate to the
whitespace word they came from, the unit of a rationale and of what a reader sees.

Scores are summed, so additive methods stay additive: SHAP's local accuracy (sum of scores +
base value = model output) holds for the word scores of every example, because the special
tokens ([CLS], [SEP]) carry no SHAP value. ``word_ids[i]`` is the index into ``text.split()`` of
token i, None for special tokens (``Encoded.word_ids``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score

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
        auprc.append(float(average_precision_score(truth, scores)))
        k = int(truth.sum())
        top = np.argsort(-scores, kind="stable")[:k]
        f1.append(float(truth[top].sum()) / k)
    if not auprc:
        return {}
    return {"word_rationale_auprc": float(np.mean(auprc)), "word_rationale_f1": float(np.mean(f1))}


def words_and_scores(example: ExampleInput, explanation: Explanation) -> tuple[list[str], np.ndarray]:
    """The example's words (``text.split()`` order) and their summed scores, for the HTML views."""
    if example.word_ids is None:
        return list(example.tokens), np.asarray(explanation.scores, dtype=np.float64)
    words = example.text.split()
    groups = word_positions(example.word_ids)
    kept = sorted({w for w in example.word_ids if w is not None})
    return [words[w] for w in kept], word_scores(explanation.scores, example.word_ids)[: len(groups)]


def local_accuracy_gap(explanation: Explanation, example: ExampleInput) -> float:
    """|sum(word scores) + base value - model output| of an additive explanation (NaN without a
    base value): 0 up to float error when specials carry no score."""
    if explanation.base_value is None or example.word_ids is None:
        return math.nan
    total = word_scores(explanation.scores, example.word_ids).sum() + explanation.base_value
    explained = explanation.extras.get("explained_output", explanation.model_output)
    return abs(float(total) - float(explained))
