"""OmegaConf resolvers the configs use (registered once, on import of ``pipeline``)."""

from __future__ import annotations

from omegaconf import OmegaConf


def auto_precision() -> str:
    """bf16-mixed where the GPU supports it, full precision elsewhere (CPU bf16 is slow)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("gw.auto_precision"):
        OmegaConf.register_new_resolver("gw.auto_precision", auto_precision)
