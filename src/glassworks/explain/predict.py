"""The one batched forward helper every explainer and metric goes through."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _padded_chunks(
    ids_batch: list[list[int]] | torch.Tensor | np.ndarray, pad_id: int, batch_size: int, device: torch.device
):
    """Yield (input_ids (B, T), attention_mask (B, T)) chunks of at most batch_size rows."""
    if batch_size < 1:
        raise ValueError(f"predict: batch_size must be >= 1, got {batch_size}")
    if isinstance(ids_batch, np.ndarray):
        ids_batch = torch.as_tensor(ids_batch, dtype=torch.long)
    n = len(ids_batch)
    if n == 0:
        raise ValueError("predict: ids_batch is empty")
    for start in range(0, n, batch_size):
        chunk = ids_batch[start : start + batch_size]
        if isinstance(chunk, torch.Tensor):
            if chunk.dim() != 2:
                raise ValueError(f"predict: ids tensor must be 2-D (N, T), got shape {tuple(chunk.shape)}")
            input_ids = chunk.to(device=device, dtype=torch.long)  # (B, T)
        else:
            # Each chunk is padded only to its own longest row: short rows never pay for a long one elsewhere.
            width = max(len(r) for r in chunk)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)  # (B, T)
            for i, r in enumerate(chunk):
                input_ids[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
            input_ids = input_ids.to(device)
        yield input_ids, (input_ids != pad_id).long()


def predict_logits(
    model: nn.Module,
    ids_batch: list[list[int]] | torch.Tensor | np.ndarray,
    pad_id: int,
    batch_size: int = 512,
) -> np.ndarray:
    """Raw logits (N, C) for N id rows, in eval mode without gradients (see `predict_proba`)."""
    was_training = model.training
    if was_training:  # eval()/train() walk every submodule: only when the mode must change
        model.eval()
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for input_ids, attention_mask in _padded_chunks(ids_batch, pad_id, batch_size, device):
                logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, C)
                out.append(logits.float().cpu().numpy())
    finally:
        if was_training:
            model.train()
    return np.concatenate(out, axis=0).astype(np.float64)  # (N, C)


def predict_proba(
    model: nn.Module,
    ids_batch: list[list[int]] | torch.Tensor | np.ndarray,
    pad_id: int,
    batch_size: int = 512,
) -> np.ndarray:
    """Class probabilities (N, C) = softmax(logits) for N id rows.

    Rows may differ in length (lists): each chunk is padded to its own longest row with `pad_id`
    and masked, so padding never changes a row's prediction. A 2-D tensor/array is taken as
    already rectangular; its `pad_id` entries are masked out.
    """
    return softmax(predict_logits(model, ids_batch, pad_id, batch_size))  # (N, C)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (N, C) -> (N, C) in float64 on the host.

    float64: SHAP's local-accuracy check compares sums of these to 1e-4.
    """
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # (N, C)


def predicted_target(model: nn.Module, ids: list[int], pad_id: int) -> tuple[int, float]:
    """(predicted class, its probability) for one unpadded example: what every explainer explains."""
    probs = predict_proba(model, [list(ids)], pad_id)[0]  # (C,)
    target = int(np.argmax(probs))
    return target, float(probs[target])


def resolve_pad_id(model: nn.Module, pad_id: int | None) -> int:
    """An explicit pad id wins; otherwise the model's own (TransformerClassifier.pad_id), else 0."""
    if pad_id is not None:
        return int(pad_id)
    return int(getattr(model, "pad_id", 0))
