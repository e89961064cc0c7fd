"""Deletion curves for generation: the probability of each generated token as its prefix
positions are masked ([MASK]) most-important-first, per attribution method, next to the same
curve for the random baseline. A faithful method's curve falls fastest (smaller area).

The curve of one step has K + 1 points (0..K positions masked, K = ``max_positions`` or all
prefix positions after [BOS]); all of a step's masked prefixes go through the model in one
batch. Curves are averaged per method over steps point by point (steps with fewer positions
hold their last value, as nothing is left to mask).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from glassworks.explain.generation import StepAttribution
from glassworks.explain.generation_metrics import rank_positions
from glassworks.explain.generation_target import GenerationStep, step_outputs
from glassworks.tracking.contract import ROBUSTNESS_BASELINE


@dataclass
class DeletionCurve:
    """Mean probability of the generated token after masking k = 0..K top positions."""

    method: str
    probabilities: np.ndarray  # (K + 1,)
    n_steps: int

    @property
    def area(self) -> float:
        """Mean height of the curve (trapezoid area over k normalised to [0, 1])."""
        p = self.probabilities
        return float(np.trapezoid(p, dx=1.0 / (len(p) - 1))) if len(p) > 1 else float(p[0])


def step_deletion(model: nn.Module, step: GenerationStep, scores: np.ndarray, mask_id: int,
                  max_positions: int) -> np.ndarray:
    """(K + 1,) probability of the step's token (not the contrastive difference) as the top-k
    positions of ``scores`` are masked."""
    order = rank_positions(scores)[:max_positions]
    rows = [np.asarray(step.prefix_ids, dtype=np.int64)]
    for p in order:
        row = rows[-1].copy()
        row[p] = mask_id
        rows.append(row)
    plain = GenerationStep(step.example_id, step.step, step.prefix_ids, step.token_id)
    return np.exp(step_outputs(model, np.stack(rows), plain))  # (K + 1,)


def deletion_curves(model: nn.Module, steps: Sequence[GenerationStep], attributions: Sequence[StepAttribution],
                    mask_id: int, max_positions: int = 10) -> dict[str, DeletionCurve]:
    """One averaged curve per method in ``attributions``."""
    if max_positions < 1:
        raise ValueError(f"robustness.deletion.max_positions must be >= 1, got {max_positions}")
    by_key = {(s.example_id, s.step): s for s in steps}
    curves: dict[str, list[np.ndarray]] = defaultdict(list)
    width = 1 + min(max_positions, max((s.n_positions - 1 for s in steps), default=0))
    for a in attributions:
        step = by_key[(a.example_id, a.step)]
        curve = step_deletion(model, step, a.scores, mask_id, max_positions)
        padded = np.concatenate([curve, np.full(width - len(curve), curve[-1])])  # (width,)
        curves[a.method].append(padded)
    return {m: DeletionCurve(m, np.mean(c, axis=0), len(c)) for m, c in curves.items()}


def deletion_metrics(curves: dict[str, DeletionCurve], baseline: str = ROBUSTNESS_BASELINE) -> dict[str, float]:
    """``<method>/deletion_auc`` and, with a baseline curve, ``<method>/deletion_auc_ratio``
    (method area / baseline area: below 1 means the method finds what matters faster)."""
    out = {}
    base = curves.get(baseline)
    for method, curve in curves.items():
        out[f"{method}/deletion_auc"] = curve.area
        if base is not None and method != baseline and base.area > 0:
            out[f"{method}/deletion_auc_ratio"] = curve.area / base.area
    return out
