"""Attention-based token attributions: raw attention, rollout, flow and gradient-weighted relevance.

Attention probabilities are materialised only here (eval mode, `output_attentions=True`); training
never pays for them. Every explainer runs one example at a time without padding, so the (T, T)
matrices below cover exactly the example's tokens. The [CLS] position's own score is set to 0 in
`scores` ([CLS] is not an input token and is never masked) and kept in extras["cls_score"].
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_flow
from torch import nn

from glassworks.explain.explanation import embedding_leaf, explain_each
from glassworks.explain.predict import eval_forward
from glassworks.explain.types import ExampleInput, ExampleSkipped, Explanation

log = logging.getLogger(__name__)

ArrayLike = torch.Tensor | np.ndarray


def _stack(attentions: Sequence[ArrayLike], what: str) -> torch.Tensor:
    """list of L (H, T, T) matrices -> (L, H, T, T) float64 tensor on the CPU."""
    if len(attentions) == 0:
        raise ValueError(f"{what}: need at least one layer of attentions")
    mats = [torch.as_tensor(a).detach().to("cpu", torch.float64) for a in attentions]
    shapes = {tuple(m.shape) for m in mats}
    if len(shapes) != 1 or len(mats[0].shape) != 3 or mats[0].shape[1] != mats[0].shape[2]:
        raise ValueError(f"{what}: every layer must be (H, T, T) with the same shape, got {sorted(shapes)}")
    return torch.stack(mats)  # (L, H, T, T)


def _residual_mean(att: torch.Tensor, add_residual: bool) -> torch.Tensor:
    """(L, H, T, T) -> (L, T, T): head mean, plus the residual stream as 0.5 A + 0.5 I, rows re-normalised."""
    a = att.mean(dim=1)  # (L, T, T)
    if add_residual:
        eye = torch.eye(a.shape[-1], dtype=a.dtype)
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(dim=-1, keepdim=True)
    return a


def attention_rollout(attentions: Sequence[ArrayLike], add_residual: bool = True) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): R = A'_L ... A'_1, shape (T, T).

    Row i of R is how much output token i (after the last layer) draws on each input token.
    """
    a = _residual_mean(_stack(attentions, "attention_rollout"), add_residual)  # (L, T, T)
    rollout = a[0]
    for layer in a[1:]:
        rollout = layer @ rollout  # (T, T)
    return rollout.numpy()


# Capacities are at most 1 (rows of A' sum to 1), so 2**24 per unit keeps every residual capacity
# and the total flow far inside scipy's int32, with a rounding error of at most 2**-25 per cut edge.
_FLOW_SCALE = float(2**24)


def _scaled(caps: np.ndarray) -> np.ndarray:
    return np.rint(caps * _FLOW_SCALE).astype(np.int32)


class _FlowNetwork:
    """The layered graph of attention flow with its dead ends cut off, for one source at a time.

    Of layer 0 only the source token can carry flow (the others have no way in), and of layer L
    only the sink ([CLS]) is a destination, so both layers shrink to one node: node 0 is the
    source, node 1 + (l-1)*T + i is token i after layer l (1 <= l < L), the last node the sink.
    That leaves (L-2)*T^2 + 2T edges instead of L*T^2, shared by the T problems but the T source
    edges, which are the only part that depends on the source.
    """

    def __init__(self, a: np.ndarray) -> None:  # (L, T, T) with L >= 2
        n_layers, n_tokens, _ = a.shape
        self.a, self.n_tokens = a, n_tokens
        self.sink = 1 + (n_layers - 1) * n_tokens
        rows, cols, caps = [], [], []
        for layer in range(1, n_layers - 1):  # edges (layer, jj) -> (layer + 1, i) carry a[layer, i, jj]
            i, jj = np.nonzero(_scaled(a[layer]))
            rows.append(1 + (layer - 1) * n_tokens + jj)
            cols.append(1 + layer * n_tokens + i)
            caps.append(_scaled(a[layer, i, jj]))
        last = _scaled(a[-1, 0, :])  # (T,): (L-1, k) -> sink carries a[L-1, 0, k]
        rows.append(1 + (n_layers - 2) * n_tokens + np.arange(n_tokens))
        cols.append(np.full(n_tokens, self.sink))
        caps.append(last)
        self.rows, self.cols, self.caps = np.concatenate(rows), np.concatenate(cols), np.concatenate(caps)

    def max_flow(self, source: int) -> float:
        first = _scaled(self.a[0, :, source])  # (T,): source -> (1, i) carries a[0, i, source]
        rows = np.concatenate([np.zeros(self.n_tokens, dtype=np.int64), self.rows])
        cols = np.concatenate([1 + np.arange(self.n_tokens), self.cols])
        caps = np.concatenate([first, self.caps])
        keep = caps > 0
        size = self.sink + 1
        graph = csr_matrix((caps[keep], (rows[keep], cols[keep])), shape=(size, size), dtype=np.int32)
        return maximum_flow(graph, 0, self.sink, method="dinic").flow_value / _FLOW_SCALE


def attention_flow(attentions: Sequence[ArrayLike], max_tokens: int | None = None) -> np.ndarray:
    """Attention flow (Abnar & Zuidema 2020): max-flow from each input token to the top [CLS] node, (T,).

    The graph has a node per (layer, token) for layers 0..L; the edge from token j at layer l-1
    to token i at layer l has capacity A'_l[i, j] (head-mean attention with the residual added).
    One or two layers have closed forms (a single edge; parallel two-edge paths). Deeper stacks
    are T max-flow problems on the layered graph without its dead ends (`_FlowNetwork`), solved by
    scipy's Dinic in C on capacities scaled to integers (within ~1e-6 of the float max-flow);
    bench/bench_flow.py compares it with networkx. `max_tokens` (None: no limit) is a budget a
    caller may still set; longer inputs raise.
    """
    a = _residual_mean(_stack(attentions, "attention_flow"), add_residual=True).numpy()  # (L, T, T)
    n_layers, n_tokens, _ = a.shape
    if max_tokens is not None and n_tokens > max_tokens:
        raise ValueError(f"explain.flow.max_tokens={max_tokens} but the input has {n_tokens} tokens")
    if n_layers == 1:
        return a[0, 0, :].copy()  # (T,): the only path j -> [CLS] is one edge
    if n_layers == 2:
        # Paths j -> (1, k) -> [CLS] share no edge: each carries min of its two capacities.
        return np.minimum(a[0], a[1, 0, :][:, None]).sum(axis=0)  # (T,) from (T_k, T_j)
    network = _FlowNetwork(a)
    return np.array([network.max_flow(j) for j in range(n_tokens)])  # (T,)


def grad_weighted_relevance(attentions: Sequence[ArrayLike], grads: Sequence[ArrayLike]) -> np.ndarray:
    """Gradient-weighted attention relevance (Chefer et al. 2021, "Generic attention-model explainability").

    R = I; for each layer in forward order: Ā = mean_h (grad ⊙ A)^+ ; R = R + Ā R. Returns (T, T).
    """
    att = _stack(attentions, "grad_weighted_relevance attentions")  # (L, H, T, T)
    grad = _stack(grads, "grad_weighted_relevance grads")  # (L, H, T, T)
    if att.shape != grad.shape:
        raise ValueError(
            f"grad_weighted_relevance: attentions {tuple(att.shape)} and grads {tuple(grad.shape)} differ in shape"
        )
    n_tokens = att.shape[-1]
    relevance = torch.eye(n_tokens, dtype=torch.float64)  # (T, T)
    for a, g in zip(att, grad):
        a_bar = (g * a).clamp(min=0).mean(dim=0)  # (T, T)
        relevance = relevance + a_bar @ relevance
    return relevance.numpy()


def _checked_attentions(model: nn.Module, attentions: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor, ...]:
    """The forward's L x (1, H, T, T) attentions; a model that drops them cannot be explained here."""
    if attentions is None:
        raise ValueError(f"{type(model).__name__} returned no attentions for output_attentions=True")
    return attentions


def _unbatched(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """L x (1, H, T, T) -> L x (H, T, T) on the CPU, out of the autograd graph."""
    return tuple(t[0].detach().cpu() for t in tensors)


def _attentions(model: nn.Module, ids: list[int]) -> tuple[torch.Tensor, ...]:
    """One unpadded forward in eval mode without gradients -> L tensors (H, T, T)."""
    with eval_forward(model) as device, torch.no_grad():
        input_ids = torch.as_tensor([ids], dtype=torch.long, device=device)  # (1, T)
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), output_attentions=True)
    return _unbatched(_checked_attentions(model, out.attentions))  # L x (H, T, T)


def _attention_grads(
    model: nn.Module, ids: list[int], target: int
) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Attentions and d logit[target] / d attention, each L x (H, T, T), from one eval-mode forward."""
    with eval_forward(model) as device, torch.enable_grad():
        input_ids, embeds = embedding_leaf(model, ids, device)  # (1, T), (1, T, C)
        out = model(inputs_embeds=embeds, attention_mask=torch.ones_like(input_ids), output_attentions=True)
        attentions = _checked_attentions(model, out.attentions)  # L x (1, H, T, T)
        grads = torch.autograd.grad(out.logits[0, target], attentions)  # L x (1, H, T, T)
    return _unbatched(attentions), _unbatched(grads)


def _stacked_numpy(attentions: Sequence[torch.Tensor]) -> np.ndarray:
    return torch.stack([a.detach().cpu() for a in attentions]).float().numpy()  # (L, H, T, T)


class _AttentionExplainer:
    """What the attention explainers share: the per-example loop and the optional kept attentions.

    A subclass gives `_row`: the (T,) [CLS] row it explains with, the L x (H, T, T) attentions
    the row came from, and its own extras.
    """

    name: str

    def __init__(self, keep_attentions: bool = False, pad_id: int | None = None) -> None:
        self.keep_attentions = keep_attentions
        self.pad_id = pad_id

    def explain(self, model: nn.Module, examples: list[ExampleInput]) -> list[Explanation]:
        return explain_each(self.name, model, examples, self.pad_id, self._scores)

    def _scores(self, model: nn.Module, example: ExampleInput, target: int) -> tuple[np.ndarray, dict]:
        row, attentions, extras = self._row(model, example, target)
        if self.keep_attentions:  # L*H*T^2 floats per example, so only when asked for
            extras["attentions"] = _stacked_numpy(attentions)  # (L, H, T, T)
        return row, extras

    def _row(
        self, model: nn.Module, example: ExampleInput, target: int
    ) -> tuple[np.ndarray, tuple[torch.Tensor, ...], dict]:
        raise NotImplementedError


class RawAttentionExplainer(_AttentionExplainer):
    """Head-mean attention paid by [CLS] to each token in one layer; extras["per_head"] is (H, T)."""

    name = "raw_attention"

    def __init__(self, layer: int = -1, keep_attentions: bool = False, pad_id: int | None = None) -> None:
        super().__init__(keep_attentions, pad_id)
        self.layer = int(layer)

    def _row(
        self, model: nn.Module, example: ExampleInput, target: int
    ) -> tuple[np.ndarray, tuple[torch.Tensor, ...], dict]:
        attentions = _attentions(model, example.ids)  # L x (H, T, T)
        if not -len(attentions) <= self.layer < len(attentions):
            raise ValueError(
                f"explain.raw_attention.layer={self.layer} is out of range for a model with {len(attentions)} layers"
            )
        per_head = attentions[self.layer][:, 0, :].double().numpy()  # (H, T)
        return per_head.mean(axis=0), attentions, {"per_head": per_head, "layer": self.layer}  # (T,)


class RolloutExplainer(_AttentionExplainer):
    """Row [CLS] of attention rollout over all layers."""

    name = "rollout"

    def __init__(self, add_residual: bool = True, keep_attentions: bool = False, pad_id: int | None = None) -> None:
        super().__init__(keep_attentions, pad_id)
        self.add_residual = add_residual

    def _row(
        self, model: nn.Module, example: ExampleInput, target: int
    ) -> tuple[np.ndarray, tuple[torch.Tensor, ...], dict]:
        attentions = _attentions(model, example.ids)  # L x (H, T, T)
        return attention_rollout(attentions, add_residual=self.add_residual)[0], attentions, {}  # (T,)


class FlowExplainer(_AttentionExplainer):
    """Attention flow into the top-layer [CLS] node.

    `max_tokens` (None, the default: every length) is an optional time budget: a longer example
    is skipped (NaN scores, counted by the runner as explain/flow/n_skipped), never a failure.
    """

    name = "flow"

    def __init__(
        self, max_tokens: int | None = None, keep_attentions: bool = False, pad_id: int | None = None
    ) -> None:
        if max_tokens is not None and max_tokens < 2:
            raise ValueError(f"explain.flow.max_tokens must be >= 2 or null (no limit), got {max_tokens}")
        super().__init__(keep_attentions, pad_id)
        self.max_tokens = None if max_tokens is None else int(max_tokens)

    def _row(
        self, model: nn.Module, example: ExampleInput, target: int
    ) -> tuple[np.ndarray, tuple[torch.Tensor, ...], dict]:
        if self.max_tokens is not None and len(example.ids) > self.max_tokens:
            raise ExampleSkipped(f"{len(example.ids)} tokens > explain.flow.max_tokens={self.max_tokens}")
        attentions = _attentions(model, example.ids)  # L x (H, T, T)
        return attention_flow(attentions), attentions, {}  # (T,)


class GradAttentionExplainer(_AttentionExplainer):
    """Chefer et al. 2021 relevance of the predicted-class logit, row [CLS]."""

    name = "grad_attention"

    def _row(
        self, model: nn.Module, example: ExampleInput, target: int
    ) -> tuple[np.ndarray, tuple[torch.Tensor, ...], dict]:
        attentions, grads = _attention_grads(model, example.ids, target)  # L x (H, T, T) each
        return grad_weighted_relevance(attentions, grads)[0], attentions, {}  # (T,)
