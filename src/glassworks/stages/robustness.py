"""The robustness stage: deletion/insertion curves and flip rates per attribution method, an
attribution-guided attack and explanation stability, starting from what the run holds (its
model and ``explanations/attributions.parquet``); logs ``robustness/<method>/<metric>`` and
``robustness/``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from glassworks.robustness import RobustnessResult, RobustnessRunner
from glassworks.scratch import scratch_dir
from glassworks.tasks.base import Task
from glassworks.stages.settings import RobustnessSettings
from glassworks.tracking import contract as C

log = logging.getLogger("glassworks.robustness")


def robustness(tracker: Any, task: Task, settings: RobustnessSettings) -> RobustnessResult:
    loaded = task.load_model(tracker.run_id, tracker.uri)
    table = pd.read_parquet(tracker.download(C.ATTRIBUTIONS))  # the entry point checked it exists
    examples, explanations = task.robustness_inputs(table)
    pad_id = loaded.tokenizer.pad_id
    explainers = dict(settings.make_explainers(pad_id, list(explanations)))
    runner = RobustnessRunner(
        curve_k=settings.curve_k, attack=settings.attack, n_stability=settings.n_stability,
        seed=settings.seed, mask_id=loaded.tokenizer.mask_id, pad_id=pad_id, special_ids=loaded.tokenizer.special_ids,
        stability_examples=settings.stability_examples, max_html_examples=settings.max_html_examples)
    out_dir = scratch_dir("robustness")
    result = runner.run(loaded.model, examples, explanations, explainers,
                        loaded.tokenizer.id_to_token, loaded.label_names, out_dir,
                        token_to_id=loaded.tokenizer.token_to_id)
    tracker.log_metrics(C.prefixed(C.ROBUSTNESS_PREFIX, {k: v for k, v in result.metrics.items() if np.isfinite(v)}))
    tracker.log_artifacts(out_dir, C.ROBUSTNESS_DIR)
    log.info("robustness results logged to %s", tracker.artifact_uri(C.ROBUSTNESS_DIR))
    return result
