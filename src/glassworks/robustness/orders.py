"""Orders: for each example, its words most important first, by one attribution method (the sum
of its signed token scores over each word) or by the seeded random baseline ``random_order``.

A word is a :data:`Unit`, the tuple of its token positions: one position for a word-level
tokenizer, several for a wordpiece one ("un", "##believ", "##able"), so deletion, insertion and
the substitution attack act on whole words of a pretrained encoder's input. Examples without
word ids (``ExampleInput.word_ids`` None) fall back to one unit per position 1..T-1. Special
tokens ([CLS], [SEP]) belong to no word and are never in an order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from glassworks.explain.types import ExampleInput, Explanation
from glassworks.explain.word_units import word_positions
from glassworks.tracking.contract import ROBUSTNESS_BASELINE

log = logging.getLogger(__name__)

RANDOM_ORDER = ROBUSTNESS_BASELINE  # name of the always-present baseline order

Unit = tuple[int, ...]  # the token positions of one word, ascending
Order = list[Unit]  # an example's words, most important first


def units_of(example: ExampleInput) -> Order:
    """The example's words as units, in text order: their token positions from ``word_ids``, or one
    unit per position 1..T-1 when the example has no (matching) word ids."""
    word_ids = example.word_ids
    if word_ids is not None and len(word_ids) == len(example.ids):
        return [tuple(p) for p in word_positions(word_ids)]
    return [(p,) for p in range(1, len(example.ids))]


def random_order(example_id: int, n_units: int, seed: int) -> np.ndarray:
    """Unit indices 1..n_units in a random order seeded per (seed, example_id).

    Per-example seeding makes an example's order independent of which other examples run with it,
    so the curves and the attack of the baseline see the same order.
    """
    rng = np.random.default_rng([int(seed), int(example_id)])
    return rng.permutation(int(n_units)) + 1  # (n_units,)


def text_of(ids: Sequence[int], id_to_token: Callable[[int], str]) -> str:
    """Word-level text of a row: its tokens after [CLS], joined by spaces."""
    return " ".join(str(id_to_token(int(i))) for i in list(ids)[1:])


def explanations_by_id(
    examples: Sequence[ExampleInput], explanations: Sequence[Explanation], method: str
) -> dict[int, Explanation]:
    """Explanations keyed by example id, checked against the examples (every one present, same length)."""
    got = {e.example_id: e for e in explanations}
    for ex in examples:
        expl = got.get(ex.example_id)
        if expl is None:
            raise ValueError(f"robustness: method {method!r} has no explanation for example_id {ex.example_id}")
        if len(expl.scores) != len(ex.ids):
            raise ValueError(
                f"robustness: method {method!r}, example_id {ex.example_id}: {len(expl.scores)} scores "
                f"for {len(ex.ids)} tokens"
            )
    return got


def method_orders(
    examples: Sequence[ExampleInput],
    explanations: Sequence[Explanation] | None,
    method: str,
    seed: int,
) -> dict[int, Order]:
    """example_id -> its words (:func:`units_of`) most important first: by the summed signed score
    of each word's tokens (a stable sort: ties keep text order), or the random order when
    `explanations` is None.

    Examples whose scores are non-finite, or that have no word, get no order (they are skipped by
    every consumer and counted in a warning here).
    """
    by_id = explanations_by_id(examples, explanations, method) if explanations is not None else {}
    orders: dict[int, np.ndarray] = {}
    n_bad = 0
    for ex in examples:
        units = units_of(ex)
        if not units:
            continue
        if explanations is None:
            orders[ex.example_id] = [units[i - 1] for i in random_order(ex.example_id, len(units), seed)]
            continue
        scores = np.asarray(by_id[ex.example_id].scores, dtype=np.float64)  # (T,)
        unit_scores = np.array([scores[list(u)].sum() for u in units])  # (W,)
        if not np.all(np.isfinite(unit_scores)):
            n_bad += 1
            continue
        orders[ex.example_id] = [units[i] for i in np.argsort(-unit_scores, kind="stable")]  # descending
    if n_bad:
        log.warning("robustness: method %r has non-finite scores on %d of %d examples; skipped", method, n_bad, len(examples))
    return orders

