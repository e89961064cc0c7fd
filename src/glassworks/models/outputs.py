"""Typed model outputs, so callers never index into anonymous tuples."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ClassifierOutput:
    """What every classifier in :mod:`glassworks.models` returns.

    ``attentions`` holds one ``(B, H, T, T)`` tensor per layer: post-softmax, pre-dropout
    probabilities (rows sum to 1, padded keys get exactly 0). They are only materialised when
    the forward pass is called with ``output_attentions=True`` and stay in the autograd graph, so
    gradient-weighted attention methods can differentiate the logits with respect to them.
    """

    logits: Tensor  # (B, C)
    attentions: tuple[Tensor, ...] | None = None  # n_layers x (B, H, T, T)


@dataclass
class CausalLMOutput:
    """What every causal language model in :mod:`glassworks.models` returns: next-token logits at
    every position (row t predicts token t + 1) and, on request, the per-layer ``(B, H, T, T)``
    attention probabilities (causal: the upper triangle is exactly 0)."""

    logits: Tensor  # (B, T, V)
    attentions: tuple[Tensor, ...] | None = None  # n_layers x (B, H, T, T)
