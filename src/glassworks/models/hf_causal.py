"""Any Hugging Face ``AutoModelForCausalLM`` folder behind our causal-LM interface.

Loaded offline (``local_files_only=True``) in float32 with eager attention: SDPA kernels return
no attention probabilities, and explanations need them. The wrapper returns our typed
:class:`CausalLMOutput` and exposes ``embed`` / ``inputs_embeds`` like :class:`DecoderLM`, so
generation, explanations and the pyfunc treat both alike. Its ``spec`` holds the HF config as a
plain dict: a logged model is rebuilt from the spec plus its safetensors weights, without the
original folder.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from glassworks.models.hf_loading import quiet_transformers, report_load
from glassworks.models.outputs import CausalLMOutput
from glassworks.validation import ConfigError, Validated


def _transformers():
    # Imported on use: transformers takes seconds to import and only this model family needs it.
    import transformers

    return transformers


@dataclass
class HFCausalConfig(Validated):
    """``pretrained``: a local folder with ``config.json`` and weights (no downloads)."""

    pretrained: str = ""

    def validate(self) -> None:
        self.require(bool(self.pretrained), "pretrained", "must name a local model folder (model.pretrained=<folder>)")
        folder = Path(self.pretrained)
        self.require(folder.is_dir(), "pretrained", f"{folder} is not a folder")
        self.require((folder / "config.json").is_file(), "pretrained", f"{folder} has no config.json")

    def check_vocabulary(self, vocab_size: int) -> None:
        """The data's vocabulary must index the model's embedding table one to one: read from
        ``config.json`` (no weights loaded), so a mismatch fails before any run exists."""
        config = json.loads((Path(self.pretrained) / "config.json").read_text(encoding="utf-8"))
        expected = config.get("vocab_size")
        if isinstance(expected, int) and expected != vocab_size:
            raise ConfigError("pretrained", _mismatch(vocab_size, self.pretrained, expected))

    def build(self, vocab_size: int, pad_id: int) -> HFCausalLM:
        """Load the pretrained model; the data's vocabulary must index into its embedding table."""
        t = _transformers()
        with quiet_transformers():
            model, info = t.AutoModelForCausalLM.from_pretrained(
                self.pretrained, local_files_only=True, attn_implementation="eager", dtype=torch.float32,
                output_loading_info=True)
        report_load(model, info, f"model.pretrained={self.pretrained}", new_head=False)
        wrapped = HFCausalLM(model, pad_id=pad_id)
        if vocab_size != wrapped.vocab_size:
            raise ValueError(f"model.pretrained: {_mismatch(vocab_size, self.pretrained, wrapped.vocab_size)}")
        return wrapped


def _mismatch(data_size: int, folder: str, model_size: int) -> str:
    return (f"vocabulary mismatch: the data has {data_size} tokens but {folder} has {model_size}; "
            "use the model's own tokenizer")


class HFCausalLM(nn.Module):
    """A ``PreTrainedModel`` for causal LM, eager attention, float32."""

    def __init__(self, model: nn.Module, pad_id: int = 0) -> None:
        super().__init__()
        self.hf = model
        self.pad_id = int(pad_id)
        # transformers' causal LMs project only the last positions through their head on request.
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    @property
    def vocab_size(self) -> int:
        return int(self.hf.get_input_embeddings().weight.shape[0])

    @property
    def max_positions(self) -> int | None:
        config = self.hf.config
        for key in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(config, key, None)
            if value:
                return int(value)
        return None

    @property
    def n_layers(self) -> int:
        return int(self.hf.config.num_hidden_layers)

    @property
    def spec(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "hf_config": self.hf.config.to_dict(),
                "vocab_size": self.vocab_size, "pad_id": self.pad_id}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> HFCausalLM:
        """An untrained model of the spec's architecture; load weights with ``load_state_dict``."""
        for key in ("hf_config", "pad_id"):
            if key not in spec:
                raise ValueError(f"model spec: missing key {key!r}")
        t = _transformers()
        config_dict = dict(spec["hf_config"])
        model_type = config_dict.pop("model_type", None)
        if not model_type:
            raise ValueError("model spec: hf_config has no model_type")
        config = t.AutoConfig.for_model(model_type, **config_dict)
        model = t.AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
        return cls(model, pad_id=int(spec["pad_id"]))

    def embed(self, input_ids: Tensor) -> Tensor:
        """Token embeddings (no positions): (B, T) -> (B, T, C)."""
        return self.hf.get_input_embeddings()(input_ids)

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None, *,
                inputs_embeds: Tensor | None = None, output_attentions: bool = False,
                last_only: bool = False) -> CausalLMOutput:
        """Logits (B, T, V); with ``last_only`` (B, 1, V), the last column's."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("forward: pass exactly one of input_ids or inputs_embeds")
        T = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        limit = self.max_positions
        if limit is not None and T > limit:
            raise ValueError(f"sequence length {T} exceeds the model's context max_positions={limit}")
        keep = {"logits_to_keep": 1} if last_only and self._keeps_logits else {}
        out = self.hf(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                      output_attentions=output_attentions, use_cache=False, return_dict=True, **keep)
        attentions = tuple(out.attentions) if output_attentions and out.attentions is not None else None
        return CausalLMOutput(logits=out.logits[:, -1:] if last_only else out.logits, attentions=attentions)
