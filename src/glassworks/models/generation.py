"""Token generation for every causal LM of :mod:`glassworks.models` (typed ``CausalLMOutput``).

No key/value cache: prompts and answers here are tens of tokens, and a full forward per step
keeps one code path for our decoder and Hugging Face models alike.
"""

from __future__ import annotations

import torch
from torch import nn


def context_length(model: nn.Module) -> int | None:
    """The longest input the model accepts (None: unknown)."""
    value = getattr(model, "max_positions", None)
    return None if value is None else int(value)


def check_fits(model: nn.Module, n_prompt: int, max_new_tokens: int, what: str = "prompt") -> None:
    """ValueError when ``n_prompt`` tokens plus ``max_new_tokens`` exceed the model's context."""
    limit = context_length(model)
    if limit is not None and n_prompt + max_new_tokens > limit:
        raise ValueError(
            f"{what} has {n_prompt} tokens ([BOS] included); with max_new_tokens={max_new_tokens} "
            f"that exceeds the model's context of {limit} positions"
        )


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt_ids: list[int],
    max_new_tokens: int,
    eos_id: int | None = None,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Continue ``prompt_ids`` (``[BOS] ...``) by up to ``max_new_tokens`` tokens, stopping after
    ``eos_id`` (which is not returned). ``temperature`` 0 is greedy (argmax); above 0, tokens are
    sampled from ``softmax(logits / temperature)`` with ``generator``. Eval mode for the call."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not prompt_ids:
        raise ValueError("generate: the prompt is empty (it needs at least [BOS])")
    check_fits(model, len(prompt_ids), max_new_tokens)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = torch.as_tensor([prompt_ids], dtype=torch.long, device=device)  # (1, T)
    out: list[int] = []
    try:
        for _ in range(max_new_tokens):
            logits = model(ids, last_only=True).logits[0, -1].float()  # (V,): the next token's scores
            if temperature == 0.0:
                token = int(logits.argmax())
            else:
                probs = torch.softmax(logits / temperature, dim=-1).cpu()
                token = int(torch.multinomial(probs, 1, generator=generator))
            if eos_id is not None and token == eos_id:
                break
            out.append(token)
            ids = torch.cat([ids, ids.new_tensor([[token]])], dim=1)  # (1, T + 1)
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def greedy_batch(model: nn.Module, prompts: list[list[int]], max_new_tokens: int, eos_id: int | None = None,
                 batch_size: int = 256) -> list[list[int]]:
    """:func:`generate` (greedy) for many prompts at once: prompts of equal length go through the
    model together (no padding, so the result equals one-by-one generation); each output stops
    before its first ``eos_id``."""
    for i, p in enumerate(prompts):
        check_fits(model, len(p), max_new_tokens, what=f"prompt {i}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[list[int]] = [[] for _ in prompts]
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    try:
        for rows in by_length.values():
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                ids = torch.as_tensor([prompts[i] for i in chunk], dtype=torch.long, device=device)  # (B, T)
                for _ in range(max_new_tokens):
                    token = model(ids, last_only=True).logits[:, -1].float().argmax(dim=-1)  # (B,)
                    ids = torch.cat([ids, token[:, None]], dim=1)  # (B, T + 1)
                for i, row in zip(chunk, ids[:, len(prompts[chunk[0]]):].tolist()):
                    out[i] = row[: row.index(eos_id)] if eos_id is not None and eos_id in row else row
    finally:
        model.train(was_training)
    return out
