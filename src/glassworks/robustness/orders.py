"""Orders: for each example, the positions 1..T-1 most important first, by one attribution method
(its signed scores) or by the seeded random baseline ``random_order``.

Every other test consumes orders, so a new way to rank (e.g. whole words of a subword tokenizer)
is a new function here returning the same ``example_id -> positions`` mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from glassworks.explain.metrics import ranking
from glassworks.explain.types import ExampleInput, Explanation
from glassworks.tracking.contract import ROBUSTNESS_BASELINE

log = logging.getLogger(__name__)

RANDOM_ORDER = ROBUSTNESS_BASELINE  # name of the always-present baseline order


def random_order(example_id: int, n_tokens: int, seed: int) -> np.ndarray:
    """Positions 1..n_tokens in a random order seeded per (seed, example_id).

    Per-example seeding makes an example's order independent of which other examples run with it,
    so the curves and the attack of the baseline see the same order.
    """
    rng = np.random.default_rng([int(seed), int(example_id)])
    return rng.permutation(int(n_tokens)) + 1  # (n_tokens,)


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
) -> dict[int, np.ndarray]:
    """example_id -> positions 1..T-1 most important first; the random order when `explanations` is None.

    Examples whose scores are non-finite, or that have no token besides [CLS], get no order (they
    are skipped by every consumer and counted in a warning here).
    """
    by_id = explanations_by_id(examples, explanations, method) if explanations is not None else {}
    orders: dict[int, np.ndarray] = {}
    n_bad = 0
    for ex in examples:
        n_tokens = len(ex.ids) - 1
        if n_tokens < 1:
            continue
        if explanations is None:
            orders[ex.example_id] = random_order(ex.example_id, n_tokens, seed)
            continue
        scores = np.asarray(by_id[ex.example_id].scores, dtype=np.float64)  # (T,)
        if not np.all(np.isfinite(scores[1:])):
            n_bad += 1
            continue
        orders[ex.example_id] = ranking(scores)  # (T-1,), descending signed score
    if n_bad:
        log.warning("robustness: method %r has non-finite scores on %d of %d examples; skipped", method, n_bad, len(examples))
    return orders

