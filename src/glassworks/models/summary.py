"""What a run's model is, in a few plain facts (logged as ``contract.MODEL_SUMMARY``, shown in the
report's Model section): base model, parameters trainable/frozen, tokenizer, max length."""

from __future__ import annotations

from typing import Any

from torch import nn


def model_summary(model: nn.Module, tokenizer: Any, max_length: int) -> dict[str, Any]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    pretrained = getattr(model, "pretrained", None)
    tok_config = getattr(tokenizer, "config", None)
    return {
        "class": type(model).__name__,
        "base_model": pretrained or "none (trained from scratch)",
        "parameters": total,
        "trainable_parameters": trainable,
        "frozen_parameters": total - trainable,
        "layers": int(getattr(model, "n_layers", 0)),
        "heads": int(getattr(model, "n_heads", 0)),
        "tokenizer": (f"the model's own ({type(getattr(tokenizer, 'hf', tokenizer)).__name__})"
                      if getattr(tokenizer, "pretrained", None) else
                      f"trained on the train split ({getattr(tok_config, 'kind', type(tokenizer).__name__)})"),
        "vocab_size": int(tokenizer.vocab_size),
        "max_length": int(max_length),
    }
