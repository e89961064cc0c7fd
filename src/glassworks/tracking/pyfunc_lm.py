"""The lm task's model as an MLflow pyfunc: prompts in, generated text out.

``predict(DataFrame{"prompt"}, params={"max_new_tokens", "temperature", "seed"})`` returns a
DataFrame with a ``generated`` column. Greedy by default; ``temperature > 0`` samples, seeded.
Artifacts are plain files: weights as safetensors, the model spec and the vocabulary as JSON; the
model class comes from code (:mod:`glassworks.tracking.pyfunc_lm_code`), so loading needs the
installed ``glassworks`` package and unpickles nothing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.models import Model
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema
from safetensors.torch import load_file, save_file

from glassworks.scratch import scratch_dir
from glassworks.data.lm_vocab import WordVocab
from glassworks.models.generation import check_fits, generate
from glassworks.models.registry import build_from_spec
from glassworks.tracking.logged_model import log_run_model

PROMPT_COLUMN = "prompt"
GENERATED_COLUMN = "generated"
WEIGHTS_FILE = "weights.safetensors"
SPEC_FILE = "model.json"
VOCAB_DIR = "vocab"
DEFAULT_MAX_NEW_TOKENS = 8
MODEL_CODE = Path(__file__).with_name("pyfunc_lm_code.py")  # what MLflow runs to build the model class
MODEL_TYPE = "causal-lm"  # the LoggedModel's type, searchable in the Models tab


@dataclass
class LoadedLM:
    model: torch.nn.Module
    vocab: WordVocab

    def generate_texts(self, prompts: list[str], max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                       temperature: float = 0.0, seed: int = 0) -> list[str]:
        """Each prompt (whitespace words) continued; every prompt is checked against the model's
        context before any is generated."""
        encoded = [self.vocab.encode(p) for p in prompts]
        for i, ids in enumerate(encoded):
            check_fits(self.model, len(ids), max_new_tokens, what=f"prompt {i}")
        generator = torch.Generator().manual_seed(int(seed))
        return [self.vocab.decode(generate(self.model, ids, max_new_tokens, self.vocab.eos_id,
                                           temperature, generator)) for ids in encoded]


def save_lm_files(model: torch.nn.Module, vocab: WordVocab, path: str | Path) -> Path:
    """weights.safetensors + model.json (spec) + vocab/vocab.json under ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # Clones: tied weights share storage, which safetensors refuses to write twice.
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS_FILE))
    (path / SPEC_FILE).write_text(json.dumps({"spec": model.spec}, indent=2))
    vocab.save(path / VOCAB_DIR)
    return path


def load_lm_dir(path: str | Path) -> LoadedLM:
    path = Path(path)
    spec = json.loads((path / SPEC_FILE).read_text())["spec"]
    model = build_from_spec(spec)
    model.load_state_dict(load_file(str(path / WEIGHTS_FILE)))
    model.eval()
    vocab = WordVocab.load(path / VOCAB_DIR)
    if len(vocab) > int(spec["vocab_size"]):
        raise ValueError(f"{path}: vocabulary has {len(vocab)} tokens but the model only {spec['vocab_size']}")
    return LoadedLM(model, vocab)


class CausalLMPyfunc(PythonModel):
    """``predict(DataFrame{"prompt"}) -> DataFrame{"generated"}``."""

    def load_context(self, context: Any) -> None:
        self.loaded = load_lm_dir(context.artifacts["model_files"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = dict(params or {})
        max_new_tokens = int(params.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        temperature = float(params.get("temperature", 0.0))
        seed = int(params.get("seed", 0))
        prompts = _prompts(model_input)
        texts = self.loaded.generate_texts(prompts, max_new_tokens, temperature, seed)
        return pd.DataFrame({GENERATED_COLUMN: texts})


def _prompts(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        if PROMPT_COLUMN not in model_input.columns:
            raise ValueError(f"model input needs a {PROMPT_COLUMN!r} column, got {list(model_input.columns)}")
        return [str(t) for t in model_input[PROMPT_COLUMN].tolist()]
    if isinstance(model_input, str):
        return [model_input]
    return [str(t) for t in model_input]


def lm_signature() -> ModelSignature:
    return ModelSignature(
        inputs=Schema([ColSpec("string", PROMPT_COLUMN)]),
        outputs=Schema([ColSpec("string", GENERATED_COLUMN)]),
        params=ParamSchema([
            ParamSpec("max_new_tokens", "long", DEFAULT_MAX_NEW_TOKENS),
            ParamSpec("temperature", "double", 0.0),
            ParamSpec("seed", "long", 0),
        ]),
    )


def pip_requirements() -> list[str]:
    from importlib.metadata import version

    names = ["torch", "safetensors", "pandas", "numpy", "mlflow"]
    return [f"{n}=={version(n)}" for n in names]


def save_lm_pyfunc(model: torch.nn.Module, vocab: WordVocab, path: str | Path, examples: list[str],
                   metadata: dict[str, Any] | None = None, mlflow_model: Model | None = None) -> Path:
    """An MLflow pyfunc model folder at ``path`` (``mlflow.pyfunc.load_model`` / ``mlflow models
    serve`` read it)."""
    path = Path(path)
    tmp = scratch_dir("lm-files")
    try:
        files = save_lm_files(model, vocab, tmp / "files")
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(MODEL_CODE),  # models from code: no python_model.pkl
            artifacts={"model_files": str(files)},
            signature=lm_signature(),
            input_example=pd.DataFrame({PROMPT_COLUMN: examples[:3]}) if examples else None,
            pip_requirements=pip_requirements(),
            metadata=dict(metadata or {}),
            mlflow_model=mlflow_model,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def log_lm_pyfunc(tracker: Any, model: torch.nn.Module, vocab: WordVocab, examples: list[str]) -> str:
    """Log the pyfunc as the run's LoggedModel ``model`` (as the classifier's); returns its model id."""

    def save(path: Path, mlflow_model: Model) -> None:
        save_lm_pyfunc(model, vocab, path, examples, {"glassworks_run_id": tracker.run_id}, mlflow_model)

    return log_run_model(tracker, save, MODEL_TYPE)
