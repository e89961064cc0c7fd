"""The run's model as an MLflow pyfunc: raw text in, class probabilities out.

Artifacts are plain files (weights as a tensor state dict, the model spec and tokenizer as
JSON) so that loading needs only the installed ``glassworks`` package and ``torch.load``
with ``weights_only=True``. A Hugging Face encoder's weights are ``save_pretrained`` files
(config.json + model.safetensors) in ``hf/`` and its tokenizer the tokenizer's own
``save_pretrained`` files. The explain stage loads a run's model through the same class.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import Model
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ColSpec, Schema

from glassworks.data.pretrained_tokenizer import PretrainedTokenizer, load_tokenizer
from glassworks.data.tokenizer import TextTokenizer
from glassworks.models.registry import build_from_spec
from glassworks.tracking.logged_model import download_run_model, log_run_model

TEXT_COLUMN = "text"
WEIGHTS_FILE = "weights.pt"
HF_WEIGHTS_DIR = "hf"
MODEL_TYPE = "text-classifier"  # the LoggedModel's type, searchable in the Models tab
MODEL_CODE = Path(__file__).with_name("pyfunc_code.py")  # what MLflow runs to build the model class


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: TextTokenizer | PretrainedTokenizer
    label_names: list[str]
    max_length: int

    @torch.no_grad()
    def predict_proba(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """(N, C) probabilities; batches padded to their longest text."""
        self.model.eval()
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer.encode_batch(texts[start : start + batch_size], self.max_length)
            width = max(len(e.ids) for e in encoded)
            ids = torch.full((len(encoded), width), self.tokenizer.pad_id, dtype=torch.long)
            for row, e in enumerate(encoded):
                ids[row, : len(e.ids)] = torch.tensor(e.ids)
            mask = (ids != self.tokenizer.pad_id).long()
            logits = self.model(ids.to(device), mask.to(device)).logits  # (B, C)
            out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)))


def load_model_dir(path: str | Path) -> LoadedModel:
    """Rebuild a model from the files :func:`save_model_files` wrote."""
    path = Path(path)
    meta = json.loads((path / "model.json").read_text())
    model = build_from_spec(meta["spec"])
    weights = meta.get("weights", WEIGHTS_FILE)
    if weights == WEIGHTS_FILE:
        state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    else:
        model.load_weights(path / weights)  # save_pretrained files (safetensors)
    model.eval()
    tokenizer = load_tokenizer(path / "tokenizer")
    return LoadedModel(model, tokenizer, list(meta["label_names"]), int(meta["max_length"]))


def save_model_files(model: torch.nn.Module, tokenizer: TextTokenizer | PretrainedTokenizer,
                     label_names: list[str], max_length: int, path: str | Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save_weights"):  # a Hugging Face model: its own save_pretrained files
        weights = HF_WEIGHTS_DIR
        model.save_weights(path / weights)
    else:
        weights = WEIGHTS_FILE
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, path / weights)
    meta = {"spec": model.spec, "label_names": list(label_names), "max_length": int(max_length),
            "weights": weights}
    (path / "model.json").write_text(json.dumps(meta, indent=2))
    tokenizer.save(path / "tokenizer")
    return path


class TextClassifierPyfunc(PythonModel):
    """``predict(DataFrame{"text"}) -> DataFrame`` of probabilities, one column per label."""

    def load_context(self, context: Any) -> None:
        self.loaded = load_model_dir(context.artifacts["model_files"])

    # DataFrame, not Any: MLflow reads this hint as a schema and warns on every import about `Any`
    # (and about a missing hint), burying a stage's one-line error; the signature is logged explicitly.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        texts = _texts(model_input)
        probs = self.loaded.predict_proba(texts)
        return pd.DataFrame(probs, columns=self.loaded.label_names)


def _texts(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN not in model_input.columns:
            raise ValueError(f"model input needs a {TEXT_COLUMN!r} column, got {list(model_input.columns)}")
        return [str(t) for t in model_input[TEXT_COLUMN].tolist()]
    if isinstance(model_input, str):
        return [model_input]
    return [str(t) for t in model_input]


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    names = ["torch", "tokenizers", "transformers", "safetensors", "pandas", "numpy", "mlflow"]
    return [f"{n}=={version(n)}" for n in names]


def classifier_signature(label_names: list[str]) -> ModelSignature:
    return ModelSignature(
        inputs=Schema([ColSpec("string", TEXT_COLUMN)]),
        outputs=Schema([ColSpec("double", name) for name in label_names]),
    )


def log_pyfunc_model(tracker: Any, model: torch.nn.Module, tokenizer: TextTokenizer | PretrainedTokenizer,
                     label_names: list[str], max_length: int, examples: list[str]) -> str:
    """Log the pyfunc as the run's LoggedModel ``model`` (signature, input example, the run's test
    metrics linked); returns its model id."""

    def save(path: Path, mlflow_model: Model) -> None:
        files = save_model_files(model, tokenizer, label_names, max_length, path.parent / "files")
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(MODEL_CODE),  # models from code: no python_model.pkl
            artifacts={"model_files": str(files)},
            signature=classifier_signature(label_names),
            input_example=pd.DataFrame({TEXT_COLUMN: examples[:3]}),
            pip_requirements=pip_requirements(),
            metadata={"label_names": list(label_names), "glassworks_run_id": tracker.run_id},
            mlflow_model=mlflow_model,
        )

    return log_run_model(tracker, save, MODEL_TYPE)


def load_run_model(run_id: str, tracking_uri: str) -> LoadedModel:
    """The model of a run (``runs:/<run_id>/model``), read from the files of its pyfunc: the weights
    with ``weights_only=True``, the spec as JSON, the tokenizer. Nothing from the store is unpickled
    (``mlflow.pyfunc.load_model`` would run the model's code file)."""
    # Download with an explicit tracking URI: mlflow.set_tracking_uri would export the URI to the
    # whole process (and to every later job of an in-process sweep).
    path = download_run_model(tracking_uri, run_id)
    flavor = Model.load(str(path / "MLmodel")).flavors["python_function"]
    return load_model_dir(path / flavor["artifacts"]["model_files"]["path"])
