"""Shared data types of the explain stage: what goes into an explainer and what comes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class ExampleInput:
    example_id: int  # row index in the test split
    text: str
    label: int
    ids: list[int]  # token ids, starting with [CLS], no padding
    tokens: list[str]  # same length as ids
    rationale: list[int] | None  # per-token 0/1 ground truth (None when the data has none)
    # word_ids[i]: index into data.words.words(text) of token i, None for specials; None when unknown
    # (explain/word_units.py aggregates wordpieces to words with it)
    word_ids: list[int | None] | None = None


@dataclass
class Explanation:
    method: str  # "shap", "raw_attention", "rollout", "flow", "grad_attention", "input_x_gradient", "random_order"
    example_id: int
    target: int  # explained class (the predicted class)
    scores: np.ndarray  # (T,) attribution per token for `target`; [CLS] included (0 if the method leaves it out)
    base_value: float | None  # SHAP expected value for target (None for non-additive methods)
    model_output: float  # model's probability of `target` on the full input
    class_scores: np.ndarray | None  # (T, C) per-class attributions when the method has them (SHAP)
    seconds: float  # wall time spent on this example
    extras: dict = field(default_factory=dict)  # e.g. {"per_head": (H, T) array} for raw attention


class ExampleSkipped(Exception):
    """A method's per-example limit (input length, budget) was hit: this example gets no scores.

    Raised by an explainer for one example; the explainer returns it as a skipped Explanation
    (NaN scores, extras["skipped"] = the reason) and the runner counts it as
    ``<method>/n_skipped``. A limit never fails a run.
    """


def skipped_explanation(method: str, example: ExampleInput, reason: str, seconds: float = 0.0) -> Explanation:
    """The Explanation of an example a method could not do: NaN scores, which every metric skips."""
    return Explanation(method=method, example_id=example.example_id, target=-1,
                       scores=np.full(len(example.ids), np.nan), base_value=None, model_output=float("nan"),
                       class_scores=None, seconds=seconds, extras={"skipped": reason})


class Explainer(Protocol):
    name: str

    def explain(self, model, examples: list[ExampleInput]) -> list[Explanation]: ...
