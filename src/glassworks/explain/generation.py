"""Explanations per generated token: each method attributes a step's explained output (the
generated token's log-probability, or log p(target) - log p(foil)) to every prefix position.

Methods (``GENERATION_METHODS``):

* ``shap``: the real ``shap`` library on token ids (Partition over a contiguous hierarchy, or
  Exact = plain Shapley values); hidden positions -> [MASK], [BOS] always kept; masked variants go
  through the model in large batches (:func:`step_outputs`). Additive: scores + base = output.
* ``attention``: head-mean attention paid by the last position in the last layer.
* ``rollout``: attention rollout (residual-mixed, causal) row of the last position.
* ``grad_attention``: Chefer et al. gradient-weighted attention relevance of the output.
* ``input_x_gradient``: token embedding x gradient of the output, summed over features.
* ``random``: uniform scores seeded per (seed, example, step), the baseline every score is
  compared against.

Every method returns a (T_s,) row with [BOS] at 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from glassworks.explain.attention import attention_rollout, grad_weighted_relevance
from glassworks.explain.explanation import embedding_leaf
from glassworks.explain.batcher import RowBatcher
from glassworks.explain.generation_target import (
    GenerationStep,
    explained_output_tensor,
    last_position_values,
    step_outputs,
    step_targets,
)
from glassworks.explain.predict import eval_forward, max_tokens_setting, resolve_max_tokens
from glassworks.explain.shap import DenseMaskPartition, Exact, RowMemory, TokenIdMasker, partition_first_rows
from glassworks.tracking.contract import EXPLAIN_BASELINE
from glassworks.validation import ConfigError

log = logging.getLogger(__name__)

GENERATION_METHODS: tuple[str, ...] = (
    "shap", "attention", "rollout", "grad_attention", "input_x_gradient", EXPLAIN_BASELINE,
)
SHAP_ALGORITHMS: tuple[str, ...] = ("partition", "exact")


@dataclass
class StepAttribution:
    """One method's attribution of one generated token. ``scores`` (T_s,) over the prefix
    positions ([BOS] = 0); ``base_value`` is SHAP's output with every position masked (None for
    non-additive methods); ``explained_output`` the model's output on the full prefix."""

    method: str
    example_id: int
    step: int
    scores: np.ndarray
    explained_output: float
    base_value: float | None
    seconds: float
    extras: dict = field(default_factory=dict)


@dataclass
class GenerationShap:
    """SHAP settings; ``exact_max_positions`` bounds Exact's 2**M evaluations."""

    algorithm: str = "partition"
    max_evals: int = 500
    batch_size: int = 512
    seed: int = 0
    mask_id: int = 3
    exact_max_positions: int = 12
    max_batch_tokens: int | str | None = "auto"  # padded tokens a forward may take besides batch_size rows
    concurrent_steps: int = 16  # steps explained at once, their masked prefixes sharing forwards (1: one at a time)

    def __post_init__(self) -> None:
        self.max_batch_tokens = max_tokens_setting(self.max_batch_tokens, "explain.shap.max_batch_tokens")
        if self.algorithm not in SHAP_ALGORITHMS:
            raise ValueError(f"explain.shap.algorithm must be one of {SHAP_ALGORITHMS}, got {self.algorithm!r}")
        if self.max_evals < 3:
            raise ValueError(f"explain.shap.max_evals must be >= 3, got {self.max_evals}")
        if self.batch_size < 1:
            raise ValueError(f"explain.shap.batch_size must be >= 1, got {self.batch_size}")
        if not 1 <= self.exact_max_positions <= 20:
            raise ValueError(f"explain.shap.exact_max_positions must be in [1, 20], got {self.exact_max_positions}")
        if self.concurrent_steps < 1:
            raise ValueError(f"explain.shap.concurrent_steps must be >= 1, got {self.concurrent_steps}")

    def check(self, step: GenerationStep) -> None:
        """Raise when Exact would need more than 2**exact_max_positions evaluations for `step`."""
        n_features = step.n_positions - 1
        if self.algorithm == "exact" and n_features > self.exact_max_positions:
            raise ValueError(
                f"explain.shap.exact_max_positions={self.exact_max_positions} but example {step.example_id} "
                f"step {step.step} has {n_features} positions after [BOS]; use algorithm=partition")

    def explain(self, model: nn.Module, step: GenerationStep) -> tuple[np.ndarray, float, dict]:
        """(T_s,) Shapley/Owen values, the base value, extras (n_evals), for one step alone."""
        self.check(step)
        max_tokens = resolve_max_tokens(model, self.max_batch_tokens)  # once, not per model call
        return self._explain_with(lambda full: step_outputs(model, full, step, self.batch_size, max_tokens), step)

    def explain_many(self, model: nn.Module, steps: list[GenerationStep]) -> list[tuple[np.ndarray, float, dict]]:
        """``explain`` of every step, ``concurrent_steps`` at a time with their masked prefixes
        gathered into shared forwards (``RowBatcher``: prefixes of one width share a forward, each
        row scored for its own step's token): the values of one step at a time, up to the last
        bits of a differently shaped batch."""
        for step in steps:
            self.check(step)
        if self.concurrent_steps == 1 or len(steps) <= 1:
            return [self.explain(model, step) for step in steps]
        max_tokens = resolve_max_tokens(model, self.max_batch_tokens)
        batcher = RowBatcher(lambda rows, targets: last_position_values(model, rows, targets)[:, None],
                             pad_id=0, batch_size=self.batch_size, max_tokens=max_tokens, isolate_rng=False,
                             same_width_chunks=True, tagged=True)

        def one(step: GenerationStep, submit) -> tuple[np.ndarray, float, dict]:
            targets = step_targets(step)
            return self._explain_with(lambda full: submit(full, tag=targets)[:, 0], step)

        return batcher.map(one, steps, self.concurrent_steps)

    def _explain_with(self, outputs: Callable[[np.ndarray], np.ndarray],
                      step: GenerationStep) -> tuple[np.ndarray, float, dict]:
        """SHAP of one step, `outputs` scoring full prefixes (N, T_s) -> (N,)."""
        ids = np.asarray(step.prefix_ids, dtype=np.int64)  # (T_s,)
        n_features = len(ids) - 1
        n_evals = 0
        memory = RowMemory()

        def evaluate(rows: np.ndarray) -> np.ndarray:
            # shap's masked rows (N, M) lack [BOS]; put it back and score the step.
            nonlocal n_evals
            full = np.concatenate([np.full((len(rows), 1), ids[0]), rows], axis=1)  # (N, T_s)
            n_evals += len(rows)
            return outputs(full)  # (N,)

        def fn(rows: np.ndarray) -> np.ndarray:
            return memory.outputs(np.asarray(rows, dtype=np.int64), evaluate)  # (N,)

        if n_features == 0:
            value = float(fn(ids[None, 1:])[0])
            return np.zeros(1), value, {"n_evals": n_evals}
        masker = TokenIdMasker(self.mask_id, hierarchical=self.algorithm == "partition")
        if self.algorithm == "partition":  # the full prefix and the rows the walk will ask for: one call
            first = partition_first_rows(masker, ids[1:], self.max_evals, self.batch_size)  # (1 + R, M)
            memory.remember(first, evaluate(first))
        explainer_cls, max_evals = ((DenseMaskPartition, self.max_evals) if self.algorithm == "partition"
                                    else (Exact, 2**n_features))
        # Partition breaks ties with its own RandomState(seed): numpy's global RNG is left alone.
        values, base = explainer_cls(fn, masker, seed=self.seed).row_values(ids[1:], max_evals, self.batch_size)
        values = values.reshape(n_features)  # (M,)
        base = float(base.reshape(-1)[0])
        return np.concatenate([[0.0], values]), base, {"n_evals": n_evals}


@dataclass
class GenerationMethodConfig:
    """One ``explain.<method>`` node of ``explain=lm`` (conf/explain/lm.yaml). The shap fields
    matter for ``method: shap`` only. ``pad_id``: the explain stage builds every node with the
    model's pad id; generation masks hidden positions with [MASK] and does not use it."""

    method: str
    pad_id: int = 0
    algorithm: str = "partition"
    max_evals: int = 500
    batch_size: int = 512
    seed: int = 0
    exact_max_positions: int = 12
    max_batch_tokens: int | str | None = "auto"
    concurrent_steps: int = 16

    def __post_init__(self) -> None:
        if self.method not in GENERATION_METHODS:
            raise ConfigError("method", f"unknown generation method {self.method!r}; known: {list(GENERATION_METHODS)}")
        try:
            self.shap_config(mask_id=0)
        except ValueError as error:
            raise ConfigError(str(error).split(" ")[0].rsplit(".", 1)[-1], str(error)) from error

    def shap_config(self, mask_id: int) -> GenerationShap:
        return GenerationShap(algorithm=self.algorithm, max_evals=self.max_evals, batch_size=self.batch_size,
                              seed=self.seed, mask_id=mask_id, exact_max_positions=self.exact_max_positions,
                              max_batch_tokens=self.max_batch_tokens, concurrent_steps=self.concurrent_steps)


def _attentions_and_grads(model: nn.Module, step: GenerationStep, need_grads: bool):
    """L x (H, T_s, T_s) attentions (and their gradients w.r.t. the explained output), the
    (1, T_s, C) embedding leaf and its gradient, from one eval-mode forward."""
    with eval_forward(model) as device, torch.enable_grad():
        input_ids, embeds = embedding_leaf(model, step.prefix_ids, device)  # (1, T_s), (1, T_s, C)
        out = model(inputs_embeds=embeds, attention_mask=torch.ones_like(input_ids), output_attentions=True)
        if not out.attentions:
            raise ValueError(f"{type(model).__name__} returned no attentions for output_attentions=True")
        value = explained_output_tensor(out.logits, step)
        grads = torch.autograd.grad(value, [*out.attentions, embeds]) if need_grads else None
    attentions = tuple(a[0].detach().cpu() for a in out.attentions)  # L x (H, T_s, T_s)
    if grads is None:
        return attentions, None, None, None
    att_grads = tuple(g[0].detach().cpu() for g in grads[:-1])  # L x (H, T_s, T_s)
    return attentions, att_grads, embeds.detach(), grads[-1].detach()


def last_layer_attention(model: nn.Module, step: GenerationStep) -> np.ndarray:
    attentions, *_ = _attentions_and_grads(model, step, need_grads=False)
    return attentions[-1][:, -1, :].double().mean(dim=0).numpy()  # (T_s,)


def causal_rollout(model: nn.Module, step: GenerationStep) -> np.ndarray:
    # Causal attention is lower-triangular, and so is the residual-mixed product: the last row
    # covers every prefix position.
    attentions, *_ = _attentions_and_grads(model, step, need_grads=False)
    return attention_rollout(attentions, add_residual=True)[-1]  # (T_s,)


def grad_attention(model: nn.Module, step: GenerationStep) -> np.ndarray:
    attentions, grads, _, _ = _attentions_and_grads(model, step, need_grads=True)
    return grad_weighted_relevance(attentions, grads)[-1]  # (T_s,)


def input_x_gradient(model: nn.Module, step: GenerationStep) -> np.ndarray:
    _, _, embeds, grad = _attentions_and_grads(model, step, need_grads=True)
    return (embeds * grad).sum(dim=-1)[0].cpu().double().numpy()  # (T_s,)


def random_scores(seed: int, step: GenerationStep) -> np.ndarray:
    rng = np.random.default_rng([seed, step.example_id, step.step])
    return rng.uniform(size=step.n_positions)  # (T_s,)


_GRADIENT_AND_ATTENTION = {
    "attention": last_layer_attention,
    "rollout": causal_rollout,
    "grad_attention": grad_attention,
    "input_x_gradient": input_x_gradient,
}


class GenerationExplainer:
    """Runs the chosen methods on every step; one :class:`StepAttribution` per (step, method)."""

    def __init__(self, methods: tuple[str, ...] | list[str] = GENERATION_METHODS,
                 shap_config: GenerationShap | None = None, seed: int = 0) -> None:
        unknown = [m for m in methods if m not in GENERATION_METHODS]
        if unknown:
            raise ValueError(f"explain.methods: unknown generation methods {unknown}; known: {list(GENERATION_METHODS)}")
        if not methods:
            raise ValueError("explain.methods: name at least one method")
        self.methods = list(methods)
        self.shap = shap_config or GenerationShap()
        self.seed = int(seed)

    def explain_step(self, model: nn.Module, step: GenerationStep,
                     shap_result: tuple[np.ndarray, float, dict, float] | None = None) -> list[StepAttribution]:
        """Every method on one step; `shap_result` (scores, base, extras, seconds): SHAP already
        computed with the other steps (``explain``)."""
        full = float(step_outputs(model, np.asarray([step.prefix_ids]), step)[0])
        results = []
        for method in self.methods:
            start = time.perf_counter()
            base: float | None = None
            extras: dict = {}
            seconds: float | None = None  # None: this method's own time here
            if method == "shap" and shap_result is not None:
                scores, base, extras, seconds = shap_result
            elif method == "shap":
                scores, base, extras = self.shap.explain(model, step)
            elif method == EXPLAIN_BASELINE:
                scores = random_scores(self.seed, step)
            else:
                scores = _GRADIENT_AND_ATTENTION[method](model, step)
            scores = np.asarray(scores, dtype=np.float64).copy()
            if method != "shap":
                # [BOS] is never masked: its score means nothing to the metrics; keep the raw one.
                extras["bos_score"] = float(scores[0])
                scores[0] = 0.0
            if seconds is None:
                seconds = time.perf_counter() - start
            results.append(StepAttribution(method, step.example_id, step.step, scores, full, base, seconds, extras))
        return results

    def explain(self, model: nn.Module, steps: list[GenerationStep]) -> list[StepAttribution]:
        """Every method on every step. SHAP runs first for all steps together (their masked prefixes
        share forwards, ``GenerationShap.explain_many``); a step's SHAP seconds are the shared
        time over the steps."""
        shap_results: list = [None] * len(steps)
        if "shap" in self.methods and steps:
            start = time.perf_counter()
            explained = self.shap.explain_many(model, steps)
            seconds = (time.perf_counter() - start) / len(steps)
            shap_results = [(*result, seconds) for result in explained]
        out = []
        for step, shap_result in zip(steps, shap_results, strict=True):
            out.extend(self.explain_step(model, step, shap_result))
        return out
