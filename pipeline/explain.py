"""Explain stage: python -m pipeline.explain run_id=<id> [explain.methods=[shap,rollout] ...]

Loads the model and tokenizer from the run's ``model/`` artifact and the data from the run's
logged config, explains a seeded stratified sample of the test split with every configured
method, scores the explanations, and logs metrics ``explain/<method>/<metric>`` and the folder
``explanations/`` into the same run (:mod:`glassworks.stages.explain`). ``pipeline.run`` runs
the same library stage right after training (the model is read back from MLflow, not memory).
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig

from glassworks.scratch import scratch_session
from glassworks.explain.runner import ExplainResult
from glassworks.stages import explain as explain_stage
from glassworks.tracking import contract as C
from pipeline.plans import explain_settings
from pipeline.stage import (build_job, clean_errors, finished_run, print_run_location, require_model, run_datamodule,
                            run_task)

log = logging.getLogger("glassworks.explain")


def explain(cfg: DictConfig, tracker: Any, datamodule: Any = None, task: Any = None) -> ExplainResult:
    """Explain the model of ``tracker.run_id`` (its task and data from the run unless given)."""
    return explain_stage.explain(tracker, task or run_task(tracker), run_datamodule(tracker, datamodule),
                                 explain_settings(cfg))


@hydra.main(version_base="1.3", config_path="../conf", config_name="explain")
def main(cfg: DictConfig) -> None:
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        job = build_job(cfg, with_data=False)
        tracker = job.tracker
        finished_run(tracker, cfg.run_id)
        require_model(tracker, cfg.run_id, "it was trained with logger.log_model=false")
        tracker.attach(cfg.run_id)
        with tracker.lifecycle("explain"):
            result = explain(cfg, tracker)
        scores = {k.split("/")[0]: round(v, 3) for k, v in result.metrics.items() if k.endswith("/comprehensiveness")}
        print_run_location(tracker, done=f"pipeline.explain finished: {result.table['example_id'].nunique()} "
                                         f"examples, comprehensiveness {scores}; see {C.EXPLAIN_INDEX}")


if __name__ == "__main__":
    main()
