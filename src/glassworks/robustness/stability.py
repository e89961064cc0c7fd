"""Stability: do a method's attributions survive an edit the method itself calls unimportant?"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from glassworks.explain.metrics import spearman
from glassworks.explain.predict import predict_proba
from glassworks.explain.types import ExampleInput, Explainer, Explanation
from glassworks.robustness.orders import explanations_by_id, text_of, units_of


@dataclass
class StabilityResult:
    method: str
    mean: float  # mean over examples of the per-example mean Spearman rho; NaN if none measured
    per_example: dict[int, float]  # example_id -> mean rho over its kept perturbations
    n_perturbations: int  # perturbed inputs explained (prediction unchanged)
    n_rejected: int  # candidate perturbations dropped because they changed the prediction


def explanation_stability(
    model: nn.Module,
    examples: Sequence[ExampleInput],
    explanations: Sequence[Explanation],
    explainer: Explainer,
    neighbours: Callable[[int], list[int]],
    id_to_token: Callable[[int], str],
    base_probs: np.ndarray,
    n_perturbations: int = 3,
    seed: int = 0,
    *,
    pad_id: int,
    batch_size: int = 512,
) -> StabilityResult:
    """Spearman rank correlation between attributions of an input and of near-copies that keep its prediction.

    Each near-copy replaces ONE word of one token with its nearest embedding neighbour (a whole
    word for a pretrained encoder; words split into wordpieces are never edited), at a random
    position among the bottom half of those words by the method's own |score| (and outside the
    rationale when there is one): an edit the method itself calls unimportant should not reshuffle its explanation. Twice
    as many candidates as needed are scored in one batched forward; the first `n_perturbations`
    whose argmax is unchanged are explained with ONE ``explainer.explain`` call over all examples.
    The correlation uses the positions left unchanged (the edited one and [CLS] excluded).
    """
    method = getattr(explainer, "name", "?")
    if n_perturbations < 1:
        raise ValueError(f"explanation_stability: n_perturbations must be >= 1, got {n_perturbations}")
    by_id = explanations_by_id(examples, explanations, method)
    candidates: list[tuple[int, int, list[int]]] = []  # (example index, edited position, ids)
    for i, ex in enumerate(examples):
        scores = np.asarray(by_id[ex.example_id].scores, dtype=np.float64)  # (T,)
        n_tokens = len(ex.ids) - 1
        if n_tokens < 3 or not np.all(np.isfinite(scores[1:])):  # Spearman needs >= 2 unchanged positions
            continue
        single = np.array([u[0] for u in units_of(ex) if len(u) == 1], dtype=np.int64)  # (W1,) one-token words
        if not len(single):
            continue
        low = single[np.argsort(np.abs(scores[single]), kind="stable")[: math.ceil(len(single) / 2)]]  # least |score| first
        if ex.rationale is not None and len(ex.rationale) == len(ex.ids):
            outside = [p for p in low if not ex.rationale[p]]
            low = np.asarray(outside) if outside else low
        rng = np.random.default_rng([int(seed), int(ex.example_id), 1])
        for pos in rng.permutation(low)[: 2 * n_perturbations]:
            near = neighbours(ex.ids[int(pos)])
            if near:
                row = list(ex.ids)
                row[int(pos)] = near[0]
                candidates.append((i, int(pos), row))
    if not candidates:
        return StabilityResult(method, math.nan, {}, 0, 0)

    probs = predict_proba(model, [c[2] for c in candidates], pad_id=pad_id, batch_size=batch_size)  # (R, C)
    kept: list[tuple[int, int, list[int]]] = []
    taken: dict[int, int] = {}
    rejected = 0
    for (i, pos, row), p in zip(candidates, probs, strict=True):
        if int(np.argmax(p)) != int(np.argmax(base_probs[i])):
            rejected += 1
            continue
        if taken.get(i, 0) < n_perturbations:
            taken[i] = taken.get(i, 0) + 1
            kept.append((i, pos, row))
    if not kept:
        return StabilityResult(method, math.nan, {}, 0, rejected)

    perturbed = []
    for i, pos, row in kept:
        ex = examples[i]
        tokens = list(ex.tokens)
        tokens[pos] = str(id_to_token(row[pos]))
        # Same example_id: explainers seed per example, so only the input changes, not the sampling.
        perturbed.append(ExampleInput(example_id=ex.example_id, text=text_of(row, id_to_token), label=ex.label,
                                      ids=row, tokens=tokens, rationale=ex.rationale,
                                      word_ids=ex.word_ids))  # fmt: skip
    new = explainer.explain(model, perturbed)
    if len(new) != len(perturbed):
        raise ValueError(f"explanation_stability: explainer {method!r} returned {len(new)} explanations for {len(perturbed)} inputs")

    rhos: dict[int, list[float]] = {}
    for (i, pos, _), expl in zip(kept, new, strict=True):
        ex = examples[i]
        keep = np.ones(len(ex.ids), dtype=bool)
        keep[[0, pos]] = False
        a = np.asarray(by_id[ex.example_id].scores, dtype=np.float64)[keep]
        b = np.asarray(expl.scores, dtype=np.float64).reshape(-1)
        if len(b) != len(ex.ids):
            raise ValueError(f"explanation_stability: explainer {method!r}, example_id {ex.example_id}: {len(b)} scores for {len(ex.ids)} tokens")
        b = b[keep]
        if not (np.all(np.isfinite(b)) and np.ptp(a) > 0 and np.ptp(b) > 0):
            continue  # a constant ranking has no correlation
        rho = spearman(a, b)
        if np.isfinite(rho):
            rhos.setdefault(ex.example_id, []).append(float(rho))
    per_example = {k: float(np.mean(v)) for k, v in rhos.items()}
    mean = float(np.mean(list(per_example.values()))) if per_example else math.nan
    return StabilityResult(method, mean, per_example, len(kept), rejected)

