"""``task=lm``: a causal language model (``model=decoder_tiny|decoder_small|hf_causal``) on the
lm datasets (``data=lm_recall|lm_copy|lm_agreement|text_files``).

Explanations explain each greedily generated token's log-probability (or, for a contrastive
step, ``log p(token) - log p(foil)``) over the prefix positions, scored against the data's gold
evidence; the pyfunc model takes prompts and returns generated text; robustness is the
generated token's deletion curve per method against random; the report shows answer accuracy,
perplexity, gold-evidence scores per method and a few attribution matrices.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.models import Model

from glassworks.data.lm_vocab import WordVocab
from glassworks.explain.generation import GenerationExplainer, GenerationMethodConfig, GenerationShap, StepAttribution
from glassworks.explain.generation_metrics import summarise
from glassworks.explain.generation_render import write_generation_views
from glassworks.explain.generation_table import attribution_table
from glassworks.explain.generation_target import GeneratedExample, GenerationStep, prepare_generation
from glassworks.models.causal_lm import CausalLM
from glassworks.models.generation import greedy_batch
from glassworks.tracking import contract as C
from glassworks.tracking.logged_model import download_run_model
from glassworks.tracking.pyfunc_lm import load_lm_dir, log_lm_pyfunc
from glassworks.validation import UserError

N_INPUT_EXAMPLES = 3  # prompts stored with the pyfunc model as its input example
BASELINE = C.EXPLAIN_BASELINE  # "random_order": always explained, every score is compared with it


@dataclass
class LoadedCausalLM:
    """A run's causal LM read back from its ``model/`` artifact (weights as safetensors)."""

    model: torch.nn.Module
    tokenizer: WordVocab
    max_length: int
    label_names: list[str] = field(default_factory=list)  # no classes: outputs are tokens

    def predict_proba(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """(N, V) next-token distribution after each prompt ([BOS] + its words)."""
        out = []
        with torch.no_grad():
            for text in texts:
                ids = torch.tensor([self.tokenizer.encode(text)])  # (1, T)
                out.append(self.model(ids, last_only=True).logits[0, -1].float().softmax(-1).numpy())  # (V,)
        return np.stack(out) if out else np.zeros((0, len(self.tokenizer)))


@dataclass
class LMResult:
    metrics: dict[str, float]
    table: pd.DataFrame  # one row per (example, step, source position, method)
    out_dir: Path

    @property
    def n_examples(self) -> int:
        """Prompts explained (each over all its generated tokens)."""
        return int(self.table["example"].nunique()) if len(self.table) else 0


@dataclass
class LMTask:
    name: str = "lm"
    headline_metrics: tuple[str, ...] = (
        "test/answer_acc", "val/perplexity", C.metric_key(C.EXPLAIN_PREFIX, "shap", "hit_at_1"),
        C.metric_key(C.EXPLAIN_PREFIX, BASELINE, "hit_at_1"))
    robustness_headline: str = "deletion_auc"  # generated tokens are probed by deletion curves only
    # the explain and robustness options its stages take (conf/explain/<option>.yaml, ...)
    stage_options: Mapping[str, str] = field(default_factory=lambda: {"explain": "lm", "robustness": "lm"})

    def build_module(self, model_config: Any, datamodule: Any, optimizer: Any, scheduler: Any,
                     mask_token_prob: float) -> CausalLM:
        vocab = datamodule.vocab
        net = model_config.build(datamodule.vocab_size, vocab.pad_id)
        return CausalLM(net.spec, optimizer=optimizer, scheduler=scheduler, mask_token_prob=mask_token_prob,
                        mask_id=vocab.mask_id)

    def log_model(self, tracker: Any, module: CausalLM, datamodule: Any) -> None:
        prompts = datamodule.split_frame("test")["text"].tolist()[:N_INPUT_EXAMPLES]
        log_lm_pyfunc(tracker, module.model.cpu(), datamodule.vocab, prompts)

    def load_model(self, run_id: str, tracking_uri: str) -> LoadedCausalLM:
        """The files of the run's pyfunc artifact (nothing unpickled), as the classifier's loader."""
        path = download_run_model(tracking_uri, run_id)
        flavor = Model.load(str(path / "MLmodel")).flavors["python_function"]
        loaded = load_lm_dir(path / flavor["artifacts"]["model_files"]["path"])
        max_length = int(getattr(loaded.model, "max_positions", None) or 0)
        return LoadedCausalLM(loaded.model.eval(), loaded.vocab, max_length)

    def explain_examples(self, loaded: LoadedCausalLM, datamodule: Any, n: int, seed: int) -> list[GeneratedExample]:
        """A seeded sample of ``n`` test prompts, each greedily answered: one step per generated token."""
        test = datamodule.examples("test")
        rng = np.random.default_rng(seed)
        rows = sorted(rng.choice(len(test), size=min(n, len(test)), replace=False).tolist())
        return [prepare_generation(loaded.model, loaded.tokenizer, test[i], int(i)) for i in rows]

    def test_predictions(self, loaded: LoadedCausalLM, datamodule: Any) -> tuple[np.ndarray, np.ndarray]:
        """(reference answer, greedy answer) text per test example, both (N,); the answer has as many
        tokens as the reference (as ``prepare_generation`` and ``test/answer_acc``), fewer at [EOS]."""
        vocab = loaded.tokenizer
        examples = datamodule.examples("test")
        n_new = max((len(e.answer) for e in examples), default=1) or 1
        generated = greedy_batch(loaded.model, [vocab.encode_words(e.prompt) for e in examples], n_new, vocab.eos_id)
        refs = [" ".join(e.answer) for e in examples]
        outs = [vocab.decode(g[: len(e.answer) or n_new]) for e, g in zip(examples, generated)]
        return np.asarray(refs, dtype=object), np.asarray(outs, dtype=object)

    def check_explainers(self, explainers: Mapping[str, Any]) -> None:
        """Every ``explain.<method>`` must be a generation method (explain=lm), named as its node."""
        for method, node in explainers.items():
            if not isinstance(node, GenerationMethodConfig):
                raise UserError(f"invalid config explain.{method}: {type(node).__name__} explains a classifier, "
                                f"not generated tokens (task={self.name} takes explain=lm)")
            if node.method != method:
                raise UserError(f"invalid config explain.{method}.method: {node.method!r} under explain.{method}")

    def explain(self, loaded: LoadedCausalLM, datamodule: Any, settings: Any, out_dir: Path,
                context: dict[str, Any]) -> LMResult:
        nodes = settings.make_explainers(loaded.tokenizer.pad_id, settings.methods)
        methods = list(dict.fromkeys([*settings.methods, BASELINE]))
        shap_node = nodes.get("shap")
        mask_id = loaded.tokenizer.mask_id
        shap_config = shap_node.shap_config(mask_id) if shap_node else GenerationShap(mask_id=mask_id)
        explainer = GenerationExplainer(methods, shap_config, seed=settings.seed)
        examples = self.explain_examples(loaded, datamodule, settings.n_examples, settings.seed)
        steps = [s for e in examples for s in e.steps]
        attributions = explainer.explain(loaded.model, steps)
        summary = summarise(loaded.model, steps, attributions, mask_id)
        metrics = {f"{m}/{k}": v for m, row in summary.items() for k, v in row.items()}
        shap_rows = [a for a in attributions if a.method == "shap"]
        if shap_rows:  # local accuracy: scores + base value = the explained output
            metrics["shap/local_accuracy_error"] = max(abs(float(a.scores.sum()) + a.base_value - a.explained_output)
                                                       for a in shap_rows)
        metrics["answer_acc"] = float(np.mean([e.correct for e in examples])) if examples else float("nan")
        table = attribution_table(examples, attributions, loaded.tokenizer)
        out_dir.mkdir(parents=True, exist_ok=True)
        table.to_parquet(out_dir / C.file_name(C.ATTRIBUTIONS), index=False)
        (out_dir / C.file_name(C.EXPLAIN_METRICS_JSON)).write_text(json.dumps(summary, indent=2))
        if shap_node:  # which SHAP made the numbers, on the index page
            budget = (f"all coalitions (at most {shap_config.exact_max_positions} prompt positions)"
                      if shap_config.algorithm == "exact" else f"max_evals={shap_config.max_evals} per generated token")
            context = {**context, "shap settings": f"algorithm={shap_config.algorithm}, {budget}, explains the "
                                                   "generated token's log-probability, hidden positions → [MASK]"}
        write_generation_views(examples, attributions, loaded.tokenizer, methods, out_dir, settings.n_heatmaps, summary,
                               context)
        return LMResult(metrics, table, out_dir)

    def robustness(self, loaded: LoadedCausalLM, table: pd.DataFrame, settings: Any, out_dir: Path) -> LMResult:
        """Deletion curves of each generated token, top-attributed positions masked first, per
        method vs random (``robustness.curve_k`` positions at most)."""
        from glassworks.robustness.generation_deletion import deletion_curves, deletion_metrics

        steps, attributions = steps_from_table(table, loaded.tokenizer)
        curves = deletion_curves(loaded.model, steps, attributions, loaded.tokenizer.mask_id, settings.curve_k)
        metrics = deletion_metrics(curves, baseline=BASELINE)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / C.file_name(C.GENERATION_DELETION_CURVES)).write_text(json.dumps(
            {m: {"probabilities": c.probabilities.tolist(), "n_steps": c.n_steps, "area": c.area}
             for m, c in curves.items()}, indent=2))
        return LMResult(metrics, pd.DataFrame(), out_dir)

    def report_sections(self, record: Any, label_names: Sequence[str], predictions: Any,
                        prediction_error: str | None, options: Any, summary: dict[str, Any]) -> list[Any]:
        from glassworks.report.lm_sections import lm_sections  # matplotlib: report only

        return lm_sections(record, predictions, prediction_error, options, summary)


def steps_from_table(table: pd.DataFrame, vocab: WordVocab) -> tuple[list[GenerationStep], list[StepAttribution]]:
    """The explained steps (prefix ids, generated token, gold) and every method's scores, read
    back from ``attributions.parquet`` (the robustness stage starts from what the run holds)."""
    missing = [c for c in ("example", "step", "generated_token", "source_position", "source_token", "method",
                           "score", "gold") if c not in table.columns]
    if missing:
        raise UserError(f"{C.ATTRIBUTIONS}: not a generation attribution table (missing columns {missing}); "
                        "was this run explained with task=lm?")
    steps: dict[tuple[int, int], GenerationStep] = {}
    attributions = []
    for (example, step, method), rows in table.sort_values("source_position").groupby(
            ["example", "step", "method"], sort=True):
        key = (int(example), int(step))
        if key not in steps:
            gold = [int(p) for p in rows.loc[rows["gold"], "source_position"]]
            steps[key] = GenerationStep(key[0], key[1], [vocab.token_to_id(t) for t in rows["source_token"]],
                                        vocab.token_to_id(str(rows["generated_token"].iloc[0])), None, gold or None)
        attributions.append(StepAttribution(str(method), key[0], key[1], rows["score"].to_numpy(np.float64),
                                            float("nan"), None, 0.0))
    return list(steps.values()), attributions
