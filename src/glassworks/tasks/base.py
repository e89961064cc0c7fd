"""The task protocol: the one place the stages ask "what kind of model is this?".

Hydra's ``task`` group (``conf/task/<name>.yaml``) instantiates one :class:`Task`; the entry
points build everything else (datamodule, model config, explainers, tracker) from cfg and hand
it to the task's methods. A stage never branches on the task's name: a new task (a causal
language model whose explanations are per generated token) or a new model family inside a task
(a Hugging Face encoder, ``model=<family>``) adds files and config, not ``if`` branches.

What a task decides, method by method:

=========================  ================================================================
``build_module``           the LightningModule that trains ``model_config``'s network
``log_model``              the run's LoggedModel ``model`` (``runs:/<run_id>/model``; the pyfunc
                           flavour: its input and output; weights as tensors)
``load_model``             that model back as a :class:`LoadedModel` (explain, robustness,
                           report all start from it: "explain later" = "explain now")
``explain_examples``       which inputs are explained, and what a score explains
                           (``ExampleInput.label``/``target``: a class; a generated token)
``test_predictions``       the task's test-split outputs the report shows
``check_explainers``       refuses ``explain.<method>`` nodes built for another task (before the run)
``explain``                explains ``explain_examples`` with the configured methods into an
                           output folder: metrics ``<method>/<metric>`` and the attribution table
``robustness``             probes the model guided by the logged attribution table
``report_sections``        the report's task-specific sections (test results, explanations,
                           robustness), with the metrics and directions of the run contract
=========================  ================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from glassworks.explain.types import ExampleInput

if TYPE_CHECKING:  # annotations only: the stages import this protocol without Lightning
    import pytorch_lightning as pl


@runtime_checkable
class LoadedModel(Protocol):
    """A run's model read back from its ``model/`` artifact."""

    model: Any               # the torch module the explainers call
    tokenizer: Any           # ids <-> tokens, pad_id, mask_id
    label_names: list[str]   # what an output index means (classes; empty for generation)
    max_length: int

    def predict_proba(self, texts: list[str], batch_size: int = 256) -> np.ndarray: ...


@runtime_checkable
class Task(Protocol):
    """What a stage needs to know about the kind of model it works on."""

    name: str                # "classify", "lm", ...; shown in the report, never branched on
    headline_metrics: tuple[str, ...]  # what a finished command prints on its last line
    robustness_headline: str  # the per-method robustness metric a finished pipeline.robustness prints
    stage_options: Mapping[str, str]  # {"explain": option, "robustness": option}: the config options its stages take

    def build_module(self, model_config: Any, datamodule: Any, optimizer: Any, scheduler: Any,
                     mask_token_prob: float) -> pl.LightningModule: ...

    def log_model(self, tracker: Any, module: pl.LightningModule, datamodule: Any) -> None: ...

    def load_model(self, run_id: str, tracking_uri: str) -> LoadedModel: ...

    def explain_examples(self, loaded: LoadedModel, datamodule: Any, n: int, seed: int) -> list[ExampleInput]: ...

    def test_predictions(self, loaded: LoadedModel, datamodule: Any) -> tuple[np.ndarray, np.ndarray]: ...

    def check_explainers(self, explainers: Mapping[str, Any]) -> None: ...

    def explain(self, loaded: LoadedModel, datamodule: Any, settings: Any, out_dir: Path,
                context: dict[str, Any]) -> Any: ...  # .metrics {"<method>/<metric>": float}, .table (DataFrame), .n_examples

    def robustness(self, loaded: LoadedModel, table: pd.DataFrame, settings: Any,
                   out_dir: Path) -> Any: ...  # .metrics {"<method>/<metric>": float}

    def report_sections(self, record: Any, label_names: Sequence[str], predictions: Any,
                        prediction_error: str | None, options: Any, summary: dict[str, Any]) -> list[Any]: ...
