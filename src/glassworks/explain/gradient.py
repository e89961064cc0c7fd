"""Gradient x input attribution on token embeddings."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from glassworks.explain.predict import predicted_target, resolve_pad_id
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
        results = []
        for example in examples:
            start = time.perf_counter()
            target, prob = predicted_target(model, example.ids, resolve_pad_id(model, self.pad_id))
            scores = input_x_gradient(model, example.ids, target)  # (T,)
            cls_score = float(scores[0])
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
                    extras={"cls_score": cls_score},
                )
            )
        return results


def input_x_gradient(model: nn.Module, ids: list[int], target: int) -> np.ndarray:
    """(T,) input x gradient of logit[target] for one unpadded example, eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.enable_grad():
            input_ids = torch.as_tensor([ids], dtype=torch.long, device=device)  # (1, T)
            embeds = model.embed(input_ids).detach().requires_grad_(True)  # (1, T, C)
            logits = model(inputs_embeds=embeds, attention_mask=torch.ones_like(input_ids)).logits  # (1, C)
            (grad,) = torch.autograd.grad(logits[0, target], embeds)  # (1, T, C)
    finally:
        model.train(was_training)
    return (embeds * grad).sum(dim=-1)[0].detach().cpu().double().numpy()  # (T,)
