"""The robustness stage: deletion/insertion curves and flip rates per attribution method, an
attribution-guided attack and explanation stability, starting from what the run holds (its
model and ``explanations/attributions.parquet``); logs ``robustness/<method>/<metric>`` and
``robustness/``."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glassworks.explain.robustness import RobustnessResult, RobustnessRunner
from glassworks.explain.types import Explainer
from glassworks.tasks.base import Task
from glassworks.tracking import contract as C
from glassworks.validation import Validated


@dataclass
class RobustnessSettings(Validated):
    curve_k: int
    attack: Any
    n_stability: int
    seed: int
    stability_examples: int | None
    max_html_examples: int
    # (pad id, method names) -> the explain stage's explainers among those names, configured as
    # there: stability re-runs them
    make_explainers: Callable[[int, Sequence[str]], Mapping[str, Explainer]]

    def validate(self) -> None:
        # The runner checks these too, but only after training: here they fail before the run.
        self.require(self.curve_k >= 1, "curve_k", f"must be >= 1, got {self.curve_k}")
        self.require(self.n_stability >= 0, "n_stability", f"must be >= 0 (0 disables stability), got {self.n_stability}")
        self.require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        self.require(self.stability_examples is None or self.stability_examples >= 1, "stability_examples",
                     f"must be >= 1 or null, got {self.stability_examples}")
        self.require(self.max_html_examples >= 0, "max_html_examples", f"must be >= 0, got {self.max_html_examples}")


def robustness(tracker: Any, task: Task, settings: RobustnessSettings) -> RobustnessResult:
    loaded = task.load_model(tracker.run_id, tracker.uri)
    table = pd.read_parquet(tracker.download(C.ATTRIBUTIONS))  # the entry point checked it exists
    examples, explanations = task.robustness_inputs(table)
    pad_id = loaded.tokenizer.pad_id
    explainers = dict(settings.make_explainers(pad_id, list(explanations)))
    runner = RobustnessRunner(
        curve_k=settings.curve_k, attack=settings.attack, n_stability=settings.n_stability,
        seed=settings.seed, mask_id=loaded.tokenizer.mask_id, pad_id=pad_id,
        stability_examples=settings.stability_examples, max_html_examples=settings.max_html_examples)
    out_dir = Path(tempfile.mkdtemp(prefix="glassworks-robustness-"))
    result = runner.run(loaded.model, examples, explanations, explainers,
                        loaded.tokenizer.id_to_token, loaded.label_names, out_dir,
                        token_to_id=loaded.tokenizer.token_to_id)
    tracker.log_metrics(C.prefixed(C.ROBUSTNESS_PREFIX, {k: v for k, v in result.metrics.items() if np.isfinite(v)}))
    tracker.log_artifacts(out_dir, C.ROBUSTNESS_DIR)
    return result
