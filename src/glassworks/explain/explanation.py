"""What the per-example explainers share: the eval-mode forward on one unpadded example, and the loop
that predicts the target, times the example and builds its `Explanation` with the [CLS] score zeroed.

[CLS] is not an input token and is never masked, so its own score is set to 0 in `scores`; where the
method's score for it means something, it is kept in extras["cls_score"].
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from glassworks.explain.predict import predict_proba, resolve_pad_id
from glassworks.explain.types import ExampleInput, ExampleSkipped, Explanation, skipped_explanation

# (model, example, predicted target) -> ((T,) scores with [CLS] still in them, extras for the Explanation)
ScoreFn = Callable[[nn.Module, ExampleInput, int], tuple[np.ndarray, dict]]


def embedding_leaf(model: nn.Module, ids: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids (1, T) and their token embeddings (1, T, C) as a fresh leaf that requires grad.

    A leaf that requires grad keeps the forward in the autograd graph even when the weights are
    frozen; fed through `inputs_embeds`, it is taken before position embeddings, so gradients
    w.r.t. it speak of the tokens' identities.
    """
    input_ids = torch.as_tensor([ids], dtype=torch.long, device=device)  # (1, T)
    embeds = model.embed(input_ids).detach().requires_grad_(True)  # (1, T, C)
    return input_ids, embeds


def cls_zeroed_explanation(
    method: str,
    example: ExampleInput,
    target: int,
    prob: float,
    row: np.ndarray,
    start: float,
    extras: dict,
    keep_cls_score: bool = True,
) -> Explanation:
    """Explanation of `target` with scores = row (T,) but [CLS] at 0; seconds counts from `start`."""
    scores = np.asarray(row, dtype=np.float64).copy()  # (T,)
    if keep_cls_score:
        extras["cls_score"] = float(scores[0])
    scores[0] = 0.0
    return Explanation(
        method=method,
        example_id=example.example_id,
        target=target,
        scores=scores,
        base_value=None,
        model_output=prob,
        class_scores=None,
        seconds=time.perf_counter() - start,
        extras=extras,
    )


def explain_each(
    method: str,
    model: nn.Module,
    examples: list[ExampleInput],
    pad_id: int | None,
    score: ScoreFn,
    keep_cls_score: bool = True,
) -> list[Explanation]:
    """One Explanation per example, of the class the model predicts for it, in the order given.

    The targets come from one padded forward over all examples (one forward an example cost
    ~2 ms each on the default model, for every method); then `score` runs one example at a time,
    unpadded, so every (T,) row covers exactly the example's tokens. An example's `seconds`
    includes its share of predicting the targets. An example the method's limit refuses
    (`ExampleSkipped`) comes back as a skipped Explanation.
    """
    if not examples:
        return []
    start = time.perf_counter()
    probs = predict_proba(model, [e.ids for e in examples], resolve_pad_id(model, pad_id))  # (N, C)
    share = (time.perf_counter() - start) / len(examples)
    results = []
    for example, example_probs in zip(examples, probs, strict=True):
        start = time.perf_counter() - share
        target = int(np.argmax(example_probs))
        prob = float(example_probs[target])
        try:
            row, extras = score(model, example, target)  # (T,), dict
        except ExampleSkipped as skip:
            results.append(skipped_explanation(method, example, str(skip), time.perf_counter() - start))
            continue
        results.append(cls_zeroed_explanation(method, example, target, prob, row, start, extras, keep_cls_score))
    return results
