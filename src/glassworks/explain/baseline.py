"""The random-attribution baseline every faithfulness/plausibility metric is compared against."""

from __future__ import annotations

import numpy as np
from torch import nn

from glassworks.explain.explanation import explain_each
from glassworks.explain.types import ExampleInput, Explanation
from glassworks.tracking.contract import EXPLAIN_BASELINE


class RandomExplainer:
    """Uniform [0, 1) scores per token ([CLS] gets 0), seeded per (seed, example_id).

    Seeding per example makes an example's scores independent of which other examples are
    explained alongside it and in what order.
    """

    name = EXPLAIN_BASELINE  # "random_order": uniform scores rank the tokens in a seeded random order

    def __init__(self, seed: int, pad_id: int | None = None) -> None:
        if seed < 0:
            raise ValueError(f"explain.random.seed must be >= 0, got {seed}")
        self.seed = int(seed)
        self.pad_id = pad_id

    def explain(self, model: nn.Module, examples: list[ExampleInput]) -> list[Explanation]:
        # The draw at [CLS] means nothing, so unlike the real methods no extras["cls_score"] is kept.
        return explain_each(self.name, model, examples, self.pad_id, self._scores, keep_cls_score=False)

    def _scores(self, model: nn.Module, example: ExampleInput, target: int) -> tuple[np.ndarray, dict]:
        rng = np.random.default_rng([self.seed, example.example_id])
        return rng.uniform(size=len(example.ids)), {}  # (T,)
