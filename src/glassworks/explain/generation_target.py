"""What a generation explanation explains: one generated token, teacher-forced.

For step s of a generated answer, the model input is ``prefix = [BOS] prompt generated[:s]``
(T_s tokens) and the explained output is the log-probability of ``generated[s]`` at the last
position, or ``log p(token) - log p(foil)`` for a contrastive step. Every method attributes that
scalar to the T_s prefix positions; [BOS] (position 0) is never masked and scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from glassworks.data.lm_tasks import LMExample
from glassworks.data.lm_vocab import WordVocab
from glassworks.explain.predict import AUTO, Auto, eval_forward, resolve_max_tokens, rows_per_chunk
from glassworks.models.generation import check_fits, generate


@dataclass
class GenerationStep:
    """One generated token to explain. ``gold`` are the prefix positions of the data's evidence
    (None: no gold for this step, e.g. a text corpus or a generation that left the reference)."""

    example_id: int
    step: int
    prefix_ids: list[int]  # (T_s,) starting with [BOS]
    token_id: int
    foil_id: int | None = None
    gold: list[int] | None = None

    @property
    def n_positions(self) -> int:
        return len(self.prefix_ids)


@dataclass
class GeneratedExample:
    example_id: int
    prompt_ids: list[int]  # [BOS] + prompt
    generated_ids: list[int]  # greedy continuation, [EOS] excluded
    reference_ids: list[int]  # the data's answer (may be empty)
    steps: list[GenerationStep]

    @property
    def correct(self) -> bool:
        return bool(self.reference_ids) and self.generated_ids == self.reference_ids


def prepare_generation(model: nn.Module, vocab: WordVocab, example: LMExample, example_id: int,
                       max_new_tokens: int | None = None) -> GeneratedExample:
    """Greedy-generate the answer of ``example`` (as many tokens as its reference answer, or
    ``max_new_tokens`` without one) and build one :class:`GenerationStep` per generated token.

    Gold evidence applies to step s only while the generated prefix equals the reference prefix
    (otherwise the model is answering a different question). Contrastive steps explain the
    generated token against the data's foil, or against the reference token when the model
    generated something else.
    """
    prompt_ids = vocab.encode_words(example.prompt)
    reference = vocab.encode_words(example.answer, bos=False)
    n_new = len(reference) if max_new_tokens is None and reference else (max_new_tokens or 1)
    check_fits(model, len(prompt_ids), n_new, what=f"example {example_id}'s prompt")
    generated = generate(model, prompt_ids, n_new, eos_id=vocab.eos_id)
    steps = []
    for s, token in enumerate(generated):
        on_reference = s < len(reference) and generated[:s] == reference[:s]
        gold = None
        if example.evidence is not None and on_reference:
            gold = list(example.evidence[s])
        foil = None
        if example.foils is not None and on_reference and example.foils[s] is not None:
            foil = vocab.token_to_id(example.foils[s]) if token == reference[s] else reference[s]
        steps.append(GenerationStep(example_id, s, prompt_ids + generated[:s], token, foil, gold))
    return GeneratedExample(example_id, prompt_ids, generated, reference, steps)


def step_outputs(model: nn.Module, rows: np.ndarray, step: GenerationStep, batch_size: int = 512,
                 max_tokens: int | None | Auto = AUTO) -> np.ndarray:
    """The explained output for N variants of one step's prefix: rows (N, T_s) ids -> (N,)
    ``log p(token)`` (minus ``log p(foil)`` when contrastive), float64, eval mode, no grad.
    Forwards take at most `batch_size` rows and `max_tokens` tokens (AUTO: `token_budget`)."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 2 or rows.shape[1] != step.n_positions:
        raise ValueError(f"step_outputs: rows must be (N, {step.n_positions}), got {rows.shape}")
    step_rows = rows_per_chunk(rows.shape[1], batch_size, resolve_max_tokens(model, max_tokens))
    targets = np.tile(step_targets(step), (min(step_rows, len(rows)), 1))  # (B, 2)
    out = [last_position_values(model, rows[start : start + step_rows], targets[: min(step_rows, len(rows) - start)])
           for start in range(0, len(rows), step_rows)]
    return np.concatenate(out) if out else np.zeros(0)


def step_targets(step: GenerationStep) -> np.ndarray:
    """(2,) int64 what a step's output is about: its token, and its foil or -1 (none)."""
    return np.array([step.token_id, -1 if step.foil_id is None else step.foil_id], dtype=np.int64)


def last_position_values(model: nn.Module, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """One forward: rows (B, T) ids of one width -> (B,) float64 ``log p(token)`` at the last
    position, minus ``log p(foil)`` where a row's foil is not -1; targets (B, 2) from
    ``step_targets`` (rows of several steps of one width can share a forward). Eval mode, no grad."""
    with eval_forward(model) as device, torch.no_grad():
        ids = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=device)  # (B, T)
        logp = model(ids, last_only=True).logits[:, -1].float().log_softmax(dim=-1)  # (B, V)
        target = torch.as_tensor(targets, device=device)  # (B, 2)
        value = logp.gather(1, target[:, :1])[:, 0]  # (B,)
        contrastive = target[:, 1] >= 0
        if bool(contrastive.any()):
            foil = logp.gather(1, target[:, 1:].clamp(min=0))[:, 0]  # (B,)
            value = torch.where(contrastive, value - foil, value)
        return value.double().cpu().numpy()


def explained_output_tensor(logits: torch.Tensor, step: GenerationStep) -> torch.Tensor:
    """The differentiable explained scalar from one forward's logits (1, T_s, V)."""
    logp = logits[0, -1].float().log_softmax(dim=-1)  # (V,)
    value = logp[step.token_id]
    return value - logp[step.foil_id] if step.foil_id is not None else value
