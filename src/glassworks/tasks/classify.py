"""``task=classify``: a text classifier (our encoder, or any ``model=`` family that builds a
sequence classifier with ``model_config.build(vocab_size, n_classes, pad_id)``).

Explanations explain the predicted class's probability; the pyfunc model takes raw text and
returns one probability column per class; the report shows a confusion matrix, faithfulness
against the random baseline and the attribution-guided robustness probe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glassworks.data.rationale import token_rationale
from glassworks.explain.runner import ExplainResult, ExplainRunner
from glassworks.explain.selection import select_examples
from glassworks.explain.table import explanations_from_table
from glassworks.explain.types import ExampleInput, Explanation
from glassworks.models.lightning import TextClassifier
from glassworks.robustness import RobustnessResult, RobustnessRunner
from glassworks.tasks.base import LoadedModel
from glassworks.tracking import contract as C
from glassworks.tracking.pyfunc import load_run_model, log_pyfunc_model
from glassworks.validation import UserError

N_INPUT_EXAMPLES = 3  # raw texts stored with the pyfunc model as its input example


@dataclass
class ClassifyTask:
    name: str = "classify"
    headline_metrics: tuple[str, ...] = ("test/acc",)
    robustness_headline: str = "attack_success"
    # the explain and robustness options its stages take (conf/explain/<option>.yaml, ...)
    stage_options: Mapping[str, str] = field(default_factory=lambda: {"explain": "default", "robustness": "default"})

    def build_module(self, model_config: Any, datamodule: Any, optimizer: Any, scheduler: Any,
                     mask_token_prob: float) -> TextClassifier:
        tokenizer = datamodule.tokenizer
        net = model_config.build(datamodule.vocab_size, datamodule.n_classes, tokenizer.pad_id)
        # Pretrained weights live only in `net`; a from-scratch model is rebuilt from its spec as
        # before, so the seeded RNG stream (and every seeded result of the tiny model) is unchanged.
        return TextClassifier(net.spec, optimizer=optimizer, scheduler=scheduler,
                              label_names=datamodule.label_names, mask_token_prob=mask_token_prob,
                              mask_id=tokenizer.mask_id,
                              net=net if getattr(net, "pretrained", None) else None)

    def log_model(self, tracker: Any, module: TextClassifier, datamodule: Any) -> None:
        examples = datamodule.split_frame("test")["text"].tolist()[:N_INPUT_EXAMPLES]
        log_pyfunc_model(tracker, module.model.cpu(), datamodule.tokenizer, datamodule.label_names,
                         datamodule.max_length, examples)

    def load_model(self, run_id: str, tracking_uri: str) -> LoadedModel:
        return load_run_model(run_id, tracking_uri)

    def explain_examples(self, loaded: LoadedModel, datamodule: Any, n: int, seed: int) -> list[ExampleInput]:
        """A seeded, class-stratified sample of the test split (misclassified ones included),
        each with its planted rationale mapped to tokens when the data has one."""
        test = datamodule.split_frame("test")
        texts = test["text"].tolist()
        predictions = loaded.predict_proba(texts).argmax(axis=1)  # (N,)
        rows = select_examples(test, predictions, n=min(n, len(test)), seed=seed)
        examples = []
        for row in rows:
            encoded = loaded.tokenizer.encode(texts[row], loaded.max_length)
            words = list(test["rationale"].iloc[row]) if datamodule.has_rationales else []
            rationale = token_rationale(words, encoded.word_ids) if words else None
            examples.append(ExampleInput(example_id=int(row), text=texts[row],
                                         label=int(test["label"].iloc[row]), ids=list(encoded.ids),
                                         tokens=list(encoded.tokens), rationale=rationale,
                                         word_ids=list(encoded.word_ids)))
        return examples

    def test_predictions(self, loaded: LoadedModel, datamodule: Any) -> tuple[np.ndarray, np.ndarray]:
        """(true class, predicted class) per test example, both (N,)."""
        test = datamodule.split_frame("test")
        predicted = loaded.predict_proba(test["text"].tolist()).argmax(axis=1)  # (N,)
        return test["label"].to_numpy(), predicted

    def robustness_inputs(self, table: pd.DataFrame) -> tuple[list[ExampleInput], dict[str, list[Explanation]]]:
        """The table's examples and methods, without the explain baseline: the robustness stage
        adds its own ``random_order`` (the same seeded random ranking), one baseline per table."""
        examples, explanations = explanations_from_table(table)
        for name in (C.EXPLAIN_BASELINE, *C.LEGACY_BASELINES):
            explanations.pop(name, None)
        return examples, explanations

    def check_explainers(self, explainers: Mapping[str, Any]) -> None:
        """Every ``explain.<method>`` must be a classifier explainer (not a generation method)."""
        for method, explainer in explainers.items():
            # Explainer is a structural protocol (not runtime-checkable): a named ``explain``.
            if not (callable(getattr(explainer, "explain", None)) and isinstance(getattr(explainer, "name", None), str)):
                raise UserError(f"invalid config explain.{method}: {type(explainer).__name__} is not a classifier "
                                f"explainer (task={self.name}; explain=default holds the classifier's methods)")

    def explain(self, loaded: LoadedModel, datamodule: Any, settings: Any, out_dir: Path,
                context: dict[str, Any]) -> ExplainResult:
        """A stratified test sample, every configured method, scored and written by the ExplainRunner."""
        pad_id = loaded.tokenizer.pad_id
        explainers = list(settings.make_explainers(pad_id, settings.methods).values())
        examples = self.explain_examples(loaded, datamodule, settings.n_examples, settings.seed)
        runner = ExplainRunner(explainers, mask_id=loaded.tokenizer.mask_id, pad_id=pad_id,
                               n_heatmaps=settings.n_heatmaps, random_seed=settings.seed)
        return runner.run(loaded.model, examples, loaded.label_names, out_dir, context)

    def robustness(self, loaded: LoadedModel, table: pd.DataFrame, settings: Any, out_dir: Path) -> RobustnessResult:
        """Curves, flip rates, the attribution-guided attack and stability (RobustnessRunner)."""
        examples, explanations = self.robustness_inputs(table)
        pad_id = loaded.tokenizer.pad_id
        explainers = dict(settings.make_explainers(pad_id, list(explanations)))
        runner = RobustnessRunner(
            curve_k=settings.curve_k, attack=settings.attack, n_stability=settings.n_stability,
            seed=settings.seed, mask_id=loaded.tokenizer.mask_id, pad_id=pad_id,
            special_ids=loaded.tokenizer.special_ids, stability_examples=settings.stability_examples,
            max_html_examples=settings.max_html_examples)
        return runner.run(loaded.model, examples, explanations, explainers, loaded.tokenizer.id_to_token,
                          loaded.label_names, out_dir, token_to_id=loaded.tokenizer.token_to_id)

    def report_sections(self, record: Any, label_names: Sequence[str], predictions: Any,
                        prediction_error: str | None, options: Any, summary: dict[str, Any]) -> list[Any]:
        # Imported here: the report's figures (matplotlib) are not needed to train or explain.
        from glassworks.report.classifier_sections import classifier_sections

        return classifier_sections(record, list(label_names), predictions, prediction_error, options, summary)
