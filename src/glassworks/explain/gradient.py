"""Gradient x input attribution on token embeddings."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from glassworks.explain.explanation import embedding_leaf, explain_each
from glassworks.explain.predict import eval_forward
from glassworks.explain.types import ExampleInput, Explanation


class InputXGradientExplainer:
    """sum_d embedding[t, d] * d logit[target] / d embedding[t, d] for every token t.

    Uses token embeddings (before position embeddings) through `inputs_embeds`, so the score says
    how much the token's identity contributes, to first order. The [CLS] position is set to 0 in
    `scores` (never masked, not an input token) and kept in extras["cls_score"].
    """

    name = "input_x_gradient"

    def __init__(self, pad_id: int | None = None) -> None:
        self.pad_id = pad_id

    def explain(self, model: nn.Module, examples: list[ExampleInput]) -> list[Explanation]:
        return explain_each(self.name, model, examples, self.pad_id, self._scores)

    def _scores(self, model: nn.Module, example: ExampleInput, target: int) -> tuple[np.ndarray, dict]:
        return input_x_gradient(model, example.ids, target), {}  # (T,)


def input_x_gradient(model: nn.Module, ids: list[int], target: int) -> np.ndarray:
    """(T,) input x gradient of logit[target] for one unpadded example, eval mode."""
    with eval_forward(model) as device, torch.enable_grad():
        input_ids, embeds = embedding_leaf(model, ids, device)  # (1, T), (1, T, C)
        logits = model(inputs_embeds=embeds, attention_mask=torch.ones_like(input_ids)).logits  # (1, C)
        (grad,) = torch.autograd.grad(logits[0, target], embeds)  # (1, T, C)
    return (embeds * grad).sum(dim=-1)[0].detach().cpu().double().numpy()  # (T,)
