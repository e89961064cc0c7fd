"""Deletion / insertion curves and flip rates of one method, with one batched forward pass."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from glassworks.explain.predict import predict_proba
from glassworks.explain.types import ExampleInput
from glassworks.robustness.orders import Order

log = logging.getLogger(__name__)

FLIP_KS: tuple[int, ...] = (1, 2, 3, 5, 10)  # flip_rate_at_<k> keys, capped at curve_k


@dataclass
class Curves:
    """Deletion / insertion curves of one method over the examples it could rank.

    Columns are k = 0..K words (a word is every token of it: a wordpiece model's "##" pieces go
    with their word). Examples shorter than K hold their last value: masking "the top-k" of an
    n-word input with k > n masks all n, keeping the top-k keeps all n.
    """

    method: str
    example_ids: list[int]
    deletion: np.ndarray  # (N, K+1) p(original class) with the top-k words masked
    insertion: np.ndarray  # (N, K+1) p(original class) with only the top-k words kept
    flipped: np.ndarray  # (N, K+1) bool: argmax under deletion differs from the original prediction

    @property
    def k_max(self) -> int:
        return self.deletion.shape[1] - 1

    def mean_deletion(self) -> np.ndarray:
        return self.deletion.mean(axis=0) if len(self.example_ids) else np.full(self.k_max + 1, math.nan)  # (K+1,)

    def mean_insertion(self) -> np.ndarray:
        return self.insertion.mean(axis=0) if len(self.example_ids) else np.full(self.k_max + 1, math.nan)  # (K+1,)

    def flip_rates(self) -> np.ndarray:
        return self.flipped.mean(axis=0) if len(self.example_ids) else np.full(self.k_max + 1, math.nan)  # (K+1,)

    def flip_rate(self, k: int) -> float:
        return float(self.flip_rates()[k])

    @staticmethod
    def _auc(curve: np.ndarray) -> float:
        # Trapezoid over k = 0..K with unit steps, divided by K: a mean probability in [0, 1], so
        # AUCs are comparable across curve lengths.
        k = len(curve) - 1
        return float((curve[0] / 2 + curve[1:-1].sum() + curve[-1] / 2) / k)

    def deletion_auc(self) -> float:
        """Lower is better: the attributed words matter."""
        return self._auc(self.mean_deletion())

    def insertion_auc(self) -> float:
        """Higher is better: the attributed words alone carry the prediction."""
        return self._auc(self.mean_insertion())


def perturbation_curves(
    model: nn.Module,
    examples: Sequence[ExampleInput],
    orders: Mapping[int, Order],
    base_probs: np.ndarray,
    k_max: int = 10,
    method: str = "",
    *,
    mask_id: int,
    pad_id: int,
    batch_size: int = 512,
) -> Curves:
    """Deletion and insertion curves for one method, with ONE batched forward over all rows.

    `orders`: example_id -> words (tuples of token positions) most important first (see
    :func:`method_orders`); examples without an order are left out; `mask_id` replaces every token
    of a deleted word. Tokens outside every word ([CLS], [SEP]) are never masked. `base_probs` (N, C): the model's probabilities on the unperturbed
    `examples` (same order); the original prediction is their argmax.
    """
    if k_max < 1:
        raise ValueError(f"perturbation_curves: k_max must be >= 1, got {k_max}")
    # Rows are deduplicated (e.g. insertion k=0 == deletion k=n): short inputs repeat a lot.
    row_index: dict[tuple[int, ...], int] = {}

    def add(row: list[int]) -> int:
        return row_index.setdefault(tuple(row), len(row_index))

    plans = []  # (example index, [deletion row idx per k=1..K], [insertion row idx per k=0..K])
    for i, ex in enumerate(examples):
        order = orders.get(ex.example_id)
        if order is None:
            continue
        n_words = len(order)
        deleted, kept = [], []
        for k in range(0, k_max + 1):
            kk = min(k, n_words)  # capped at the example's own length
            row = list(ex.ids)
            for unit in order[:kk]:
                for p in unit:
                    row[int(p)] = mask_id
            deleted.append(add(row))
            row = list(ex.ids)
            for unit in order[kk:]:
                for p in unit:
                    row[int(p)] = mask_id
            kept.append(add(row))
        plans.append((i, deleted, kept))

    n = len(plans)
    deletion = np.zeros((n, k_max + 1))
    insertion = np.zeros((n, k_max + 1))
    flipped = np.zeros((n, k_max + 1), dtype=bool)
    if plans:
        probs = predict_proba(model, [list(r) for r in row_index], pad_id=pad_id, batch_size=batch_size)  # (R, C)
        for j, (i, deleted, kept) in enumerate(plans):
            target = int(np.argmax(base_probs[i]))
            deletion[j] = probs[deleted, target]
            insertion[j] = probs[kept, target]
            flipped[j] = probs[deleted].argmax(axis=1) != target
        log.debug("curves %s: %d examples, %d unique rows", method, n, len(row_index))
    return Curves(method=method, example_ids=[examples[i].example_id for i, _, _ in plans],
                  deletion=deletion, insertion=insertion, flipped=flipped)  # fmt: skip

