"""The random tiny Transformer that the explainer unit tests share."""

from __future__ import annotations

import torch

from glassworks.models.transformer import TransformerConfig

CLS, MASK, PAD = 2, 3, 0
VOCAB, N_CLASSES, N_LAYERS, N_HEADS = 40, 3, 2, 2


def tiny_model(seed: int = 0) -> torch.nn.Module:
    """Random weights, scaled up so outputs (and SHAP values) are far from uniform/zero."""
    torch.manual_seed(seed)
    config = TransformerConfig(d_model=16, n_heads=N_HEADS, n_layers=N_LAYERS, d_ff=32, dropout=0.1,
                               max_positions=64)
    model = config.build(vocab_size=VOCAB, n_classes=N_CLASSES, pad_id=PAD)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.5)
    return model.eval()
