"""Which test examples get explained: a seeded, class-stratified sample that includes mistakes.

Explaining only correctly classified examples hides exactly the cases a reader wants to inspect,
so up to ``misclassified_fraction`` of the sample is drawn from the misclassified rows first.
Both parts are stratified by the TRUE class, balancing the whole sample across classes, so that a
rare class still gets explained when the budget is small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _labels(frame_or_split: Any) -> np.ndarray:
    """The label column of a pandas frame, a datasets split, a mapping, or a plain label sequence."""
    if isinstance(frame_or_split, np.ndarray):
        return frame_or_split.astype(np.int64).reshape(-1)
    columns = getattr(frame_or_split, "columns", None)  # pandas (an Index: no truthiness)
    if columns is None:
        columns = getattr(frame_or_split, "column_names", None)  # datasets.Dataset
    if columns is not None:
        if "label" not in columns:
            raise ValueError(
                f"select_examples: the split has no 'label' column (columns: {list(columns)})"
            )
        return np.asarray(frame_or_split["label"], dtype=np.int64).reshape(-1)
    if isinstance(frame_or_split, dict):
        if "label" not in frame_or_split:
            raise ValueError(f"select_examples: the mapping has no 'label' key (keys: {sorted(frame_or_split)})")
        return np.asarray(frame_or_split["label"], dtype=np.int64).reshape(-1)
    return np.asarray(list(frame_or_split), dtype=np.int64).reshape(-1)


def _balanced(
    pool: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator, counts: dict[int, int]
) -> list[int]:
    """Up to n indices from `pool`, each from the class with the fewest picks so far (`counts`, updated).

    Counting the picks of earlier calls keeps the whole sample balanced, not just each part.
    """
    by_class: dict[int, list[int]] = {}
    for c in np.unique(labels[pool]):
        rows = pool[labels[pool] == c].copy()
        rng.shuffle(rows)
        by_class[int(c)] = rows.tolist()
    # Which class wins a tie varies with the seed, so no class is systematically favoured.
    tie = dict(zip(by_class, rng.permutation(len(by_class)).tolist(), strict=True))
    picked: list[int] = []
    while len(picked) < n:
        available = [c for c, rows in by_class.items() if rows]
        if not available:
            break
        c = min(available, key=lambda c: (counts.get(c, 0), tie[c]))
        picked.append(int(by_class[c].pop()))
        counts[c] = counts.get(c, 0) + 1
    return picked


def select_examples(
    frame_or_split: Any,
    predictions: np.ndarray | Sequence[int],
    n: int,
    seed: int,
    misclassified_fraction: float = 0.25,
) -> list[int]:
    """Row indices (ascending) of `n` examples to explain, deterministic for `seed`.

    `frame_or_split`: a DataFrame / datasets split with a ``label`` column, or the labels (N,).
    `predictions`: predicted class per row (N,). Misclassified rows fill up to
    ``round(misclassified_fraction * n)`` slots (at least one when any exists and the fraction is
    positive); the rest is drawn from correctly classified rows, topped up with any leftover rows
    when there are not enough. Returns every row when ``n >= N``.
    """
    labels = _labels(frame_or_split)  # (N,)
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)  # (N,)
    if len(predictions) != len(labels):
        raise ValueError(f"select_examples: {len(predictions)} predictions for {len(labels)} rows")
    if n < 0:
        raise ValueError(f"select_examples: n must be >= 0, got {n}")
    if not 0.0 <= misclassified_fraction <= 1.0:
        raise ValueError(f"select_examples: misclassified_fraction must be in [0, 1], got {misclassified_fraction}")
    if n >= len(labels):
        return list(range(len(labels)))
    rng = np.random.default_rng(seed)
    wrong = np.flatnonzero(predictions != labels)
    right = np.flatnonzero(predictions == labels)
    n_wrong = min(len(wrong), round(misclassified_fraction * n))
    if n_wrong == 0 and len(wrong) > 0 and misclassified_fraction > 0 and n > 0:
        n_wrong = 1
    counts: dict[int, int] = {}
    picked = _balanced(wrong, labels, n_wrong, rng, counts)
    picked += _balanced(right, labels, n - len(picked), rng, counts)
    if len(picked) < n:
        rest = np.setdiff1d(np.arange(len(labels)), np.asarray(picked, dtype=np.int64))
        picked += _balanced(rest, labels, n - len(picked), rng, counts)
    return sorted(picked)
