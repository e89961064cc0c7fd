"""A small pre-LN decoder-only (GPT-style) Transformer that can show its attention.

The causal sibling of :mod:`glassworks.models.transformer`, in the same nanoGPT style. Shapes in
comments use B = batch, T = sequence length, C = d_model, H = heads, D = C // H, V = vocabulary.

Two attention paths share the same weights:

* training / generation: ``F.scaled_dot_product_attention`` with a causal mask (fused kernels,
  nothing materialised);
* ``output_attentions=True``: the explicit ``softmax(QK^T / sqrt(D))`` over the causal, unpadded
  keys, returned per layer and kept in the autograd graph (gradient-weighted attention).

Inputs are right-padded and start with [BOS]; position t predicts token t + 1. With
``last_only=True`` (generation and its explanations read the next token after the last column)
the last block computes its query, attention output and MLP for the last position alone, keys and
values for every position: logits (B, 1, V), the same as the last column of the full ones, ~1.4x
faster on decoder_tiny (bench/bench_cls_block.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassworks.models.one_query import one_query_heads
from glassworks.models.outputs import CausalLMOutput
from glassworks.validation import Validated


@dataclass
class DecoderConfig(Validated):
    """Architecture sizes (the vocabulary comes in :meth:`build`)."""

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    dropout: float = 0.0
    max_positions: int = 64
    tie_embeddings: bool = True
    # "Smeared keys" (Olsson et al. 2022, induction heads): each head's key at t is a learned
    # mix of the keys at t and t - 1, so matching "the token after an earlier occurrence" needs
    # one attention layer instead of a two-layer circuit; recall/copy then train in seconds.
    smear_keys: bool = True

    def validate(self) -> None:
        for key in ("d_model", "n_heads", "n_layers", "d_ff", "max_positions"):
            value = getattr(self, key)
            self.require(value > 0, key, f"must be a positive int, got {value}")
        self.require(
            self.d_model % self.n_heads == 0,
            "d_model",
            f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})",
        )
        self.require(
            0.0 <= self.dropout < 1.0, "dropout", f"must satisfy 0 <= dropout < 1, got {self.dropout}"
        )

    def build(self, vocab_size: int, pad_id: int) -> DecoderLM:
        """The sizes only known after the vocabulary is built."""
        return DecoderLM(self, vocab_size=vocab_size, pad_id=pad_id)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)  # fused: one matmul for q, k, v
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.resid_dropout = nn.Dropout(config.dropout)
        # (H,) logits of the weight on the current key; starts at an even mix.
        self.smear = nn.Parameter(torch.zeros(config.n_heads)) if config.smear_keys else None

    def _smeared(self, k: Tensor) -> Tensor:
        # k: (B, H, T, D) -> (B, H, T, D); position 0 has no predecessor and keeps its own key.
        if self.smear is None:
            return k
        w = torch.sigmoid(self.smear)[None, :, None, None]  # (1, H, 1, 1)
        previous = F.pad(k[:, :, :-1], (0, 0, 1, 0))  # (B, H, T, D): key of t - 1, zeros at t = 0
        previous[:, :, 0] = k[:, :, 0]
        return w * k + (1 - w) * previous

    def forward(
        self, x: Tensor, allowed: Tensor, output_attentions: bool, last_only: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        # x: (B, T, C); allowed: (B, 1, T, T) bool, True = query t may read key s (s <= t, s real).
        # last_only: the query of position T - 1 alone, output (B, 1, C) (no attentions to return).
        B, T, C = x.shape
        H = self.n_heads
        if last_only:
            if output_attentions:
                raise ValueError("CausalSelfAttention: last_only returns no attention probabilities")
            q, k, v = one_query_heads(self.qkv, x, x[:, -1:], H)  # (B, H, 1, D), 2 x (B, H, T, D)
            k = self._smeared(k)  # (B, H, T, D)
            dropout_p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, :, -1:], dropout_p=dropout_p)
            return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, 1, C))), None  # (B, 1, C)
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        k = self._smeared(k)  # (B, H, T, D)
        dropout_p = self.dropout if self.training else 0.0

        probs: Tensor | None = None
        if output_attentions:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)  # (B, H, T, T)
            # -inf so future and padded keys get exactly 0 probability.
            scores = scores.masked_fill(~allowed, float("-inf"))
            probs = scores.softmax(dim=-1)  # (B, H, T, T), rows sum to 1, upper triangle 0
            y = F.dropout(probs, p=dropout_p, training=self.training) @ v  # (B, H, T, D)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side
        return self.resid_dropout(self.proj(y)), probs


class MLP(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_ff)
        self.proj = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        # (B, T, C) -> (B, T, d_ff) -> (B, T, C)
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN block, as in the encoder."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(
        self, x: Tensor, allowed: Tensor, output_attentions: bool, last_only: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        # (B, T, C) -> (B, T, C), or (B, 1, C) for the last position alone with last_only
        a, probs = self.attn(self.ln_1(x), allowed, output_attentions, last_only)  # (B, T|1, C)
        x = (x[:, -1:] if last_only else x) + a
        x = x + self.mlp(self.ln_2(x))  # (B, T|1, C)
        return x, probs


class DecoderLM(nn.Module):
    """Token + learned position embeddings -> causal pre-LN blocks -> final LN -> LM head."""

    def __init__(self, config: DecoderConfig, vocab_size: int, pad_id: int):
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size: must be positive, got {vocab_size}")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id: must be in [0, vocab_size={vocab_size}), got {pad_id}")
        self.config = config
        self.vocab_size = vocab_size
        self.pad_id = pad_id

        self.tok_emb = nn.Embedding(vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_positions, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, vocab_size, bias=False)

        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))
        if config.tie_embeddings:
            # GPT-2 weight tying: the input and output views of a token share one vector.
            self.head.weight = self.tok_emb.weight

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def n_layers(self) -> int:
        return self.config.n_layers

    @property
    def n_heads(self) -> int:
        return self.config.n_heads

    @property
    def max_positions(self) -> int:
        return self.config.max_positions

    @property
    def spec(self) -> dict[str, Any]:
        """Plain containers only: stored in ``weights_only`` checkpoints and MLflow artifacts."""
        return {
            "class": type(self).__name__,
            "config": self.config.to_dict(),
            "vocab_size": self.vocab_size,
            "pad_id": self.pad_id,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> DecoderLM:
        """Rebuild an (untrained) model from :attr:`spec`; load weights with ``load_state_dict``."""
        for key in ("config", "vocab_size", "pad_id"):
            if key not in spec:
                raise ValueError(f"model spec: missing key {key!r}")
        if spec.get("class", cls.__name__) != cls.__name__:
            raise ValueError(f"model spec: class is {spec['class']!r}, expected {cls.__name__!r}")
        config = DecoderConfig(**dict(spec["config"]))
        return cls(config, vocab_size=int(spec["vocab_size"]), pad_id=int(spec["pad_id"]))

    def embed(self, input_ids: Tensor) -> Tensor:
        """Token embeddings (no positions): (B, T) -> (B, T, C), for ``inputs_embeds``."""
        return self.tok_emb(input_ids)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        *,
        inputs_embeds: Tensor | None = None,
        output_attentions: bool = False,
        last_only: bool = False,
    ) -> CausalLMOutput:
        """``input_ids`` (B, T) or ``inputs_embeds`` (B, T, C); ``attention_mask`` (B, T), 1 for
        tokens and 0 for right padding (default: all tokens). Logits (B, T, V): row t predicts
        token t + 1; with ``last_only`` (B, 1, V), the last column's (that of a padded row too)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("forward: pass exactly one of input_ids or inputs_embeds")
        tok = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        B, T, _ = tok.shape
        if T > self.config.max_positions:
            raise ValueError(
                f"sequence length {T} exceeds the model's context max_positions="
                f"{self.config.max_positions}"
            )
        causal = torch.ones(T, T, dtype=torch.bool, device=tok.device).tril()  # (T, T)
        if attention_mask is None:
            allowed = causal[None, None]  # (1, 1, T, T)
        else:
            if attention_mask.shape != (B, T):
                raise ValueError(
                    f"attention_mask: expected shape {(B, T)}, got {tuple(attention_mask.shape)}"
                )
            # Right padding only: every query keeps its own diagonal key (a padded query reads
            # itself), so no softmax row is empty and no NaN appears.
            keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
            eye = torch.eye(T, dtype=torch.bool, device=tok.device)
            allowed = (causal & keys) | eye  # (B, 1, T, T)

        pos = torch.arange(T, device=tok.device)  # (T,)
        x = self.drop(tok + self.pos_emb(pos))  # (B, T, C)
        attentions: list[Tensor] = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            # Only the last position's state is read with last_only: the last block skips the others.
            x, probs = block(x, allowed, output_attentions, i == last and last_only and not output_attentions)
            if probs is not None:  # x: (B, T|1, C); probs: (B, H, T, T) | None
                attentions.append(probs)
        logits = self.head(self.ln_f(x[:, -1:] if last_only else x))  # (B, T|1, V)
        return CausalLMOutput(
            logits=logits, attentions=tuple(attentions) if output_attentions else None
        )
