"""Scores for generation attributions: agreement with the gold evidence (``hit_at_1``, ``mrr``,
``auprc``) and faithfulness of the generated token's explained output (ERASER
comprehensiveness/sufficiency, averaged over k-bins). [BOS] is never ranked nor masked.

Metric names are plain ``[a-z_0-9]`` so they log as ``explain/<method>/<metric>`` unchanged.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from torch import nn

from glassworks.explain.generation import StepAttribution
from glassworks.explain.generation_target import GenerationStep, step_outputs
from glassworks.explain.metrics import average_precision

FAITHFULNESS_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)


def rank_positions(scores: np.ndarray) -> np.ndarray:
    """Prefix positions 1..T_s-1, most important first (descending; ties in position order)."""
    body = np.asarray(scores, dtype=np.float64)[1:]
    return np.argsort(-body, kind="stable") + 1


def evidence_scores(scores: np.ndarray, gold: Sequence[int]) -> dict[str, float]:
    """hit_at_1 (the top position is gold), mrr (1 / rank of the best-ranked gold position),
    auprc (average precision of the scores for the gold flags) for one step."""
    order = rank_positions(scores)
    gold_set = set(int(g) for g in gold)
    ranks = [r for r, p in enumerate(order, start=1) if int(p) in gold_set]
    flags = np.isin(np.arange(1, len(scores)), list(gold_set)).astype(int)
    return {
        "hit_at_1": float(int(order[0]) in gold_set) if len(order) else 0.0,
        "mrr": 1.0 / ranks[0] if ranks else 0.0,
        "auprc": average_precision(flags, np.asarray(scores)[1:]) if flags.any() else 0.0,
    }


def _k_values(n_features: int, fractions: Sequence[float]) -> list[int]:
    return sorted({min(n_features, max(1, math.ceil(f * n_features))) for f in fractions})


def faithfulness_scores(model: nn.Module, step: GenerationStep, scores: np.ndarray, mask_id: int,
                        fractions: Sequence[float] = FAITHFULNESS_FRACTIONS) -> dict[str, float]:
    """comprehensiveness = mean_k [f(x) - f(x without its top-k)], sufficiency = mean_k [f(x) -
    f(only the top-k kept)], f = the step's explained output; one batched forward per step."""
    n_features = step.n_positions - 1
    if n_features == 0:
        return {"comprehensiveness": 0.0, "sufficiency": 0.0}
    order = rank_positions(scores)
    ks = _k_values(n_features, fractions)
    base = np.asarray(step.prefix_ids, dtype=np.int64)
    rows = [base]
    for k in ks:
        removed = base.copy()
        removed[order[:k]] = mask_id
        kept = np.full_like(base, mask_id)
        kept[0] = base[0]
        kept[order[:k]] = base[order[:k]]
        rows += [removed, kept]
    out = step_outputs(model, np.stack(rows), step)  # (1 + 2K,)
    full = out[0]
    return {
        "comprehensiveness": float(np.mean(full - out[1::2])),
        "sufficiency": float(np.mean(full - out[2::2])),
    }


def summarise(model: nn.Module, steps: Sequence[GenerationStep], attributions: Sequence[StepAttribution],
              mask_id: int, fractions: Sequence[float] = FAITHFULNESS_FRACTIONS) -> dict[str, dict[str, float]]:
    """Per method: mean evidence scores over steps with gold (plus ``n_gold_steps``), mean
    comprehensiveness/sufficiency over all steps, mean seconds per step."""
    by_key = {(s.example_id, s.step): s for s in steps}
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for a in attributions:
        step = by_key.get((a.example_id, a.step))
        if step is None:
            raise ValueError(f"summarise: attribution of {a.method!r} names example {a.example_id} step {a.step}, "
                             "which is not among the steps")
        if len(a.scores) != step.n_positions:
            raise ValueError(f"summarise: {a.method!r} example {a.example_id} step {a.step}: "
                             f"{len(a.scores)} scores for {step.n_positions} positions")
        if not np.all(np.isfinite(a.scores)):
            sums[a.method]["n_nonfinite"].append(1.0)
            continue
        metrics = sums[a.method]
        if step.gold:
            for name, value in evidence_scores(a.scores, step.gold).items():
                metrics[name].append(value)
        for name, value in faithfulness_scores(model, step, a.scores, mask_id, fractions).items():
            metrics[name].append(value)
        metrics["seconds_per_step"].append(a.seconds)
    out: dict[str, dict[str, float]] = {}
    for method, metrics in sums.items():
        row = {name: float(np.mean(values)) for name, values in metrics.items() if name != "n_nonfinite"}
        row["n_gold_steps"] = float(len(metrics.get("hit_at_1", [])))
        row["n_nonfinite"] = float(len(metrics.get("n_nonfinite", [])))
        out[method] = row
    return out
