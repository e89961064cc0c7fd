"""Rebuild a model from its plain-dict ``spec`` (as stored in checkpoints and MLflow runs)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from glassworks.models.decoder import DecoderLM
from glassworks.models.hf_causal import HFCausalLM
from glassworks.models.transformer import TransformerClassifier

# A dict rather than if/else so a new architecture (e.g. a Hugging Face wrapper) is one entry.
MODEL_CLASSES: dict[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    "TransformerClassifier": TransformerClassifier.from_spec,
    "DecoderLM": DecoderLM.from_spec,
    "HFCausalLM": HFCausalLM.from_spec,
}


def build_from_spec(spec: Mapping[str, Any]) -> nn.Module:
    """Instantiate the untrained model described by ``spec``; ``spec["class"]`` picks it."""
    if "class" not in spec:
        raise ValueError(
            f"model spec: missing key 'class' (known classes: {sorted(MODEL_CLASSES)})"
        )
    name = spec["class"]
    if name not in MODEL_CLASSES:
        raise ValueError(
            f"model spec: unknown class {name!r} (known classes: {sorted(MODEL_CLASSES)})"
        )
    return MODEL_CLASSES[name](spec)
