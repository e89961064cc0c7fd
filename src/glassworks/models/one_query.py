"""The projections of an attention layer that only one position's output is read from.

Our encoder's head reads [CLS] (position 0) and generation reads the decoder's last position, so
their last block needs the query of that one position but the keys and values of every position.
This computes exactly those rows of the layer's fused ``qkv`` projection (the same numbers as the
matching rows of ``qkv(x)``, float32's last bits aside).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def one_query_heads(qkv: nn.Linear, x: Tensor, query: Tensor, n_heads: int) -> tuple[Tensor, Tensor, Tensor]:
    """x (B, T, C) and the row `query` (B, 1, C) of it -> q (B, H, 1, D), k and v (B, H, T, D).

    ``qkv`` is the fused projection whose output rows are q | k | v, each C wide."""
    B, T, C = x.shape
    D = C // n_heads
    w, b = qkv.weight, qkv.bias  # (3C, C), (3C,)
    q = F.linear(query, w[:C], b[:C]).view(B, 1, n_heads, D).transpose(1, 2)  # (B, H, 1, D)
    k, v = F.linear(x, w[C:], b[C:]).split(C, dim=2)  # 2 x (B, T, C)
    return q, k.view(B, T, n_heads, D).transpose(1, 2), v.view(B, T, n_heads, D).transpose(1, 2)
