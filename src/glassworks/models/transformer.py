"""A small pre-LN Transformer encoder classifier that can show its attention.

One self-contained file in the spirit of nanoGPT's ``model.py``. Shapes in comments use
B = batch, T = sequence length, C = d_model, H = heads, D = C // H (head size), K = classes.

Two attention paths share the same weights:

* training / plain inference: ``F.scaled_dot_product_attention`` (fused kernels, nothing
  materialised), so capturing attention never slows training;
* ``output_attentions=True``: the explicit ``softmax(QK^T / sqrt(D))`` whose probabilities are
  returned and stay in the autograd graph (gradient-weighted attention, Chefer-style relevance).

Inputs are right-padded and start with [CLS]; the classifier reads position 0. So without
``output_attentions`` (training, and every prediction, explanation and metric) the last block
computes its query, attention output and MLP for [CLS] alone, keys and values still for every
token: the same logits and gradients (float32's last bits aside), 1.5-1.7x faster forwards and
1.3-1.5x faster training steps on the default sizes (bench/bench_cls_block.py; bench/README.md,
"the last block reads [CLS]").
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
from glassworks.models.outputs import ClassifierOutput
from glassworks.validation import Validated


@dataclass
class TransformerConfig(Validated):
    """Architecture sizes (the data-dependent sizes come in :meth:`build`)."""

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 128
    dropout: float = 0.1
    max_positions: int = 256

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
            0.0 <= self.dropout < 1.0,
            "dropout",
            f"must satisfy 0 <= dropout < 1, got {self.dropout}",
        )

    def build(self, vocab_size: int, n_classes: int, pad_id: int) -> TransformerClassifier:
        """The sizes only known after tokenisation (vocabulary, label set, pad id)."""
        return TransformerClassifier(
            self, vocab_size=vocab_size, n_classes=n_classes, pad_id=pad_id
        )


class SelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)  # fused: one matmul for q, k, v
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: Tensor, key_mask: Tensor, output_attentions: bool, first_only: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        # x: (B, T, C); key_mask: (B, 1, 1, T) bool, True = key may be attended to.
        # first_only: queries for position 0 alone, output (B, 1, C) (no attentions to return).
        B, T, C = x.shape
        H = self.n_heads
        if first_only:
            if output_attentions:
                raise ValueError("SelfAttention: first_only returns no attention probabilities")
            q, k, v = one_query_heads(self.qkv, x, x[:, :1], H)  # (B, H, 1, D), 2 x (B, H, T, D)
            dropout_p = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p)  # (B, H, 1, D)
            return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, 1, C))), None
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        v = v.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, D)
        dropout_p = self.dropout if self.training else 0.0

        probs: Tensor | None = None
        if output_attentions:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)  # (B, H, T, T)
            # -inf (not a large negative number) so padded keys get exactly 0 probability.
            scores = scores.masked_fill(~key_mask, float("-inf"))
            probs = scores.softmax(dim=-1)  # (B, H, T, T), rows sum to 1
            # Return the pre-dropout probabilities: dropout is a training regulariser, not part
            # of what the model "attends to".
            y = F.dropout(probs, p=dropout_p, training=self.training) @ v  # (B, H, T, D)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side
        return self.resid_dropout(self.proj(y)), probs


class MLP(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_ff)
        self.proj = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        # (B, T, C) -> (B, T, d_ff) -> (B, T, C)
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN block: normalising before each sublayer keeps small models stable without warmup
    tricks, and leaves the residual stream untouched for attribution methods."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(
        self, x: Tensor, key_mask: Tensor, output_attentions: bool, first_only: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        # (B, T, C) -> (B, T, C), or (B, 1, C) for position 0 alone with first_only
        a, probs = self.attn(self.ln_1(x), key_mask, output_attentions, first_only)  # (B, T|1, C)
        x = (x[:, :1] if first_only else x) + a
        x = x + self.mlp(self.ln_2(x))  # (B, T|1, C)
        return x, probs


class TransformerClassifier(nn.Module):
    """Token + learned position embeddings -> pre-LN blocks -> final LN -> [CLS] -> linear head."""

    def __init__(self, config: TransformerConfig, vocab_size: int, n_classes: int, pad_id: int):
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size: must be positive, got {vocab_size}")
        if n_classes < 1:
            raise ValueError(f"n_classes: must be positive, got {n_classes}")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id: must be in [0, vocab_size={vocab_size}), got {pad_id}")
        self.config = config
        self.vocab_size = vocab_size
        self.n_classes = n_classes
        self.pad_id = pad_id

        self.tok_emb = nn.Embedding(vocab_size, config.d_model, padding_idx=pad_id)
        self.pos_emb = nn.Embedding(config.max_positions, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, n_classes)

        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream so its variance does
        # not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.padding_idx is not None:
                # normal_ overwrote the zero row nn.Embedding reserves for padding.
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    @property
    def n_layers(self) -> int:
        return self.config.n_layers

    @property
    def n_heads(self) -> int:
        return self.config.n_heads

    @property
    def spec(self) -> dict[str, Any]:
        """Plain containers only: stored in ``weights_only`` checkpoints and MLflow artifacts."""
        return {
            "class": type(self).__name__,
            "config": self.config.to_dict(),
            "vocab_size": self.vocab_size,
            "n_classes": self.n_classes,
            "pad_id": self.pad_id,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TransformerClassifier:
        """Rebuild an (untrained) model from :attr:`spec`; load weights with ``load_state_dict``."""
        for key in ("config", "vocab_size", "n_classes", "pad_id"):
            if key not in spec:
                raise ValueError(f"model spec: missing key {key!r}")
        if spec.get("class", cls.__name__) != cls.__name__:
            raise ValueError(f"model spec: class is {spec['class']!r}, expected {cls.__name__!r}")
        config = TransformerConfig(**dict(spec["config"]))
        return cls(
            config,
            vocab_size=int(spec["vocab_size"]),
            n_classes=int(spec["n_classes"]),
            pad_id=int(spec["pad_id"]),
        )

    def embed(self, input_ids: Tensor) -> Tensor:
        """Token embeddings (no positions): (B, T) -> (B, T, C). Feed (a function of) the result
        back as ``inputs_embeds`` for input x gradient and similar methods."""
        return self.tok_emb(input_ids)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        *,
        inputs_embeds: Tensor | None = None,
        output_attentions: bool = False,
        every_position: bool = False,
    ) -> ClassifierOutput:
        """``input_ids`` (B, T) or ``inputs_embeds`` (B, T, C) token embeddings; ``attention_mask``
        (B, T) with 1 for tokens and 0 for padding (default: all tokens). ``every_position``: the
        last block computes every row too (the reference its [CLS]-only path matches; same
        logits and gradients)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("forward: pass exactly one of input_ids or inputs_embeds")
        tok = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        B, T, _ = tok.shape
        if T > self.config.max_positions:
            raise ValueError(
                f"sequence length {T} exceeds max_positions={self.config.max_positions}"
            )
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.long, device=tok.device)
        elif attention_mask.shape != (B, T):
            raise ValueError(
                f"attention_mask: expected shape {(B, T)}, got {tuple(attention_mask.shape)}"
            )

        key_mask = attention_mask.bool()  # (B, T)
        # Position 0 ([CLS]) is what the head reads, so it is always a real token; keeping it
        # attendable guarantees every softmax row has a finite entry (no NaN on an all-zero mask)
        # without a device sync to check the mask.
        key_mask = torch.cat([torch.ones_like(key_mask[:, :1]), key_mask[:, 1:]], dim=1)
        key_mask = key_mask[:, None, None, :]  # (B, 1, 1, T): broadcast over heads and queries

        pos = torch.arange(T, device=tok.device)  # (T,)
        x = self.drop(tok + self.pos_emb(pos))  # (B, T, C)
        attentions: list[Tensor] = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            # Only [CLS]'s last-layer state reaches the head: the last block skips the other rows.
            first_only = i == last and not (output_attentions or every_position)
            x, probs = block(x, key_mask, output_attentions, first_only)  # (B, T|1, C), (B, H, T, T) | None
            if probs is not None:
                attentions.append(probs)
        x = self.ln_f(x[:, :1])  # (B, 1, C)
        logits = self.head(x[:, 0])  # (B, K): [CLS] pooling
        return ClassifierOutput(
            logits=logits, attentions=tuple(attentions) if output_attentions else None
        )
