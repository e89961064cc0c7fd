"""The random-attribution baseline every faithfulness/plausibility metric is compared against."""

from __future__ import annotations

import time

import numpy as np
from torch import nn

from glassworks.explain.predict import predicted_target, resolve_pad_id
from glassworks.explain.types import ExampleInput, Explanation


class RandomExplainer:
    """Uniform [0, 1) scores per token ([CLS] gets 0), seeded per (seed, example_id).

    Seeding per example makes an example's scores independent of which other examples are
    explained alongside it and in what order.
    """

    name = "random"

    def __init__(self, seed: int, pad_id: int | None = None) -> None:
        if seed < 0:
            raise ValueError(f"explain.random.seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self.pad_id = pad_id

    def explain(self, model: nn.Module, examples: list[ExampleInput]) -> list[Explanation]:
        results = []
        for example in examples:
            start = time.perf_counter()
            target, prob = predicted_target(model, example.ids, resolve_pad_id(model, self.pad_id))
            rng = np.random.default_rng([self.seed, example.example_id])
            scores = rng.uniform(size=len(example.ids))  # (T,)
            scores[0] = 0.0
            results.append(
                Explanation(
                    method=self.name,
                    example_id=example.example_id,
                    target=target,
                    scores=scores,
                    base_value=None,
                    model_output=prob,
                    class_scores=None,
                    seconds=time.perf_counter() - start,
                )
            )
        return results
