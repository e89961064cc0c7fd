"""The one batched forward helper every explainer and metric goes through."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import numpy as np
import torch
from torch import nn

# On a CPU, one forward's cost per row stays flat while the batch's activations fit the caches
# and grows up to ~1.7x beyond (bench/README.md, "token budget"): on 2 threads the default model
# (width 64) was fastest up to ~8K tokens a forward, MiniLM (width 384) up to ~1-2K; on 1 thread
# the default model's cost per row rose ~1.45x past ~6K tokens (T = 17, 65 and 129 alike). So a
# CPU forward takes at most CPU_ACTIVATION_BUDGET_PER_THREAD x threads / width tokens (rows x
# padded width) on top of `batch_size` rows, counting at most MEASURED_THREADS threads (more
# were never measured: they keep 2 threads' budget). A GPU wants the largest batch that fits:
# no token cap there.
CPU_ACTIVATION_BUDGET_PER_THREAD: Final = 2**18
MEASURED_THREADS: Final = 2


class Auto:
    def __repr__(self) -> str:
        return "AUTO"


AUTO: Final = Auto()  # max_tokens=AUTO: token_budget(model)


def token_width(model: nn.Module) -> int:
    """The width of the model's token vectors between its layers: a Hugging Face model's
    ``config.hidden_size`` (ALBERT's embeddings are 128 wide and its layers 768), otherwise the
    embedding dim of its largest nn.Embedding (the vocabulary's); 1 for a model with neither."""
    for module in model.modules():
        hidden = getattr(getattr(module, "config", None), "hidden_size", None)
        if isinstance(hidden, int) and hidden > 0:
            return hidden
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    return max(embeddings, key=lambda m: m.num_embeddings).embedding_dim if embeddings else 1


def token_budget(model: nn.Module) -> int | None:
    """Most tokens (rows x padded width) one forward of `model` should take with torch's current
    thread count; None: no cap (GPU)."""
    if next(model.parameters()).device.type != "cpu":
        return None
    threads = min(max(torch.get_num_threads(), 1), MEASURED_THREADS)  # read now: torch_threads may have changed it
    return max(1, CPU_ACTIVATION_BUDGET_PER_THREAD * threads // token_width(model))


def max_tokens_setting(value: int | str | None, key: str) -> int | None | Auto:
    """A config's token cap: "auto" (AUTO), null (None: `batch_size` alone) or a positive int."""
    if value is None or isinstance(value, Auto):
        return value
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return AUTO
        raise ValueError(f"{key} must be auto, null or a positive number of tokens, got {value!r}")
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{key} must be auto, null or a positive number of tokens, got {value!r}")
    return int(value)


def resolve_max_tokens(model: nn.Module, max_tokens: int | None | Auto) -> int | None:
    """AUTO -> `token_budget(model)`; anything else as it is."""
    return token_budget(model) if isinstance(max_tokens, Auto) else max_tokens


def check_chunking(batch_size: int, max_tokens: int | None) -> None:
    """Raise unless `batch_size` >= 1 and `max_tokens` is None or >= 1."""
    if batch_size < 1:
        raise ValueError(f"predict: batch_size must be >= 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"predict: max_tokens must be >= 1 or None, got {max_tokens}")


def chunk_bounds(widths: Sequence[int] | np.ndarray, batch_size: int, max_tokens: int | None) -> list[tuple[int, int]]:
    """[start, end) chunks of rows in order: at most `batch_size` rows each and, when `max_tokens`
    is set, at most that many tokens once padded to the chunk's widest row (a row wider than
    `max_tokens` alone makes a chunk)."""
    check_chunking(batch_size, max_tokens)
    n = len(widths)
    array = np.asarray(widths)
    if n and array.min() == array.max() > 0:  # one width (a flush of equal-length examples): no row loop
        step = rows_per_chunk(int(array[0]), batch_size, max_tokens)
        return [(start, min(start + step, n)) for start in range(0, n, step)]
    bounds: list[tuple[int, int]] = []
    start, widest = 0, 0
    for i in range(n):
        wider = max(widest, int(widths[i]))
        if i > start and (i - start >= batch_size or (max_tokens is not None and (i - start + 1) * wider > max_tokens)):
            bounds.append((start, i))
            start, wider = i, int(widths[i])
        widest = wider
    if n > start:
        bounds.append((start, n))
    return bounds


def rows_per_chunk(width: int, batch_size: int, max_tokens: int | None) -> int:
    """`chunk_bounds`' chunk size for rows that all have `width` tokens."""
    if max_tokens is None:
        return batch_size
    return max(1, min(batch_size, max_tokens // max(1, width)))


def _padded_chunks(
    ids_batch: list[list[int]] | torch.Tensor | np.ndarray,
    pad_id: int,
    batch_size: int,
    max_tokens: int | None,
    device: torch.device,
):
    """Yield (input_ids (B, T), attention_mask (B, T)) chunks of `chunk_bounds`' sizes."""
    if isinstance(ids_batch, np.ndarray):
        ids_batch = torch.as_tensor(ids_batch, dtype=torch.long)
    if len(ids_batch) == 0:
        raise ValueError("predict: ids_batch is empty")
    if isinstance(ids_batch, torch.Tensor):
        if ids_batch.dim() != 2:
            raise ValueError(f"predict: ids tensor must be 2-D (N, T), got shape {tuple(ids_batch.shape)}")
        check_chunking(batch_size, max_tokens)
        step = rows_per_chunk(ids_batch.shape[1], batch_size, max_tokens)
        for start in range(0, len(ids_batch), step):
            input_ids = ids_batch[start : start + step].to(device=device, dtype=torch.long)  # (B, T)
            yield input_ids, (input_ids != pad_id).long()
        return
    for start, end in chunk_bounds([len(r) for r in ids_batch], batch_size, max_tokens):
        chunk = ids_batch[start:end]
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
    max_tokens: int | None | Auto = AUTO,
) -> np.ndarray:
    """Raw logits (N, C) for N id rows, in eval mode without gradients (see `predict_proba`).

    Forwards take at most `batch_size` rows and `max_tokens` tokens (AUTO: `token_budget(model)`).
    """
    budget = resolve_max_tokens(model, max_tokens)
    out: list[np.ndarray] = []
    with eval_forward(model) as device, torch.no_grad():
        for input_ids, attention_mask in _padded_chunks(ids_batch, pad_id, batch_size, budget, device):
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, C)
            out.append(logits.float().cpu().numpy())
    return np.concatenate(out, axis=0).astype(np.float64)  # (N, C)


@contextmanager
def eval_forward(model: nn.Module) -> Iterator[torch.device]:
    """Eval mode for the block (explanations must not see dropout), yielding the model's device.

    A model in training mode is put back in it afterwards, even when the forward raises. One in
    eval mode is left alone: ``eval()``/``train()`` walk every submodule, ~0.85 ms a call on a
    small decoder, and explainers make thousands of small forwards.
    """
    was_training = model.training
    if was_training:
        model.eval()
    try:
        yield next(model.parameters()).device
    finally:
        if was_training:
            model.train()


def predict_proba(
    model: nn.Module,
    ids_batch: list[list[int]] | torch.Tensor | np.ndarray,
    pad_id: int,
    batch_size: int = 512,
    max_tokens: int | None | Auto = AUTO,
) -> np.ndarray:
    """Class probabilities (N, C) = softmax(logits) for N id rows.

    Rows may differ in length (lists): each chunk is padded to its own longest row with `pad_id`
    and masked, so padding never changes a row's prediction. A 2-D tensor/array is taken as
    already rectangular; its `pad_id` entries are masked out.
    """
    return softmax(predict_logits(model, ids_batch, pad_id, batch_size, max_tokens))  # (N, C)


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
