"""Explain stage: python -m pipeline.explain run_id=<id> [explain.methods=[shap,rollout] ...]

Loads the model and tokenizer from the run's ``model/`` artifact and the data from the run's
logged config, explains a seeded stratified sample of the test split with every configured
method, scores the explanations, and logs metrics ``explain/<method>/<metric>``, ``time/explain_s``
and the folder ``explanations/`` (:mod:`glassworks.stages.explain`) into a NEW child run of the
given run (a derived run, :mod:`glassworks.tracking.derived`): a finished run is never
rewritten. Twice makes two children. ``pipeline.run`` runs the same library stage right after
training, into the run itself (the model is read back from MLflow, not memory).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hydra
from omegaconf import DictConfig

from glassworks.scratch import scratch_session
from glassworks.explain.runner import ExplainResult
from glassworks.stages import explain as explain_stage
from glassworks.tracking import contract as C
from pipeline import imports_done
from pipeline.plans import explain_settings
from pipeline.stage import build_job, clean_errors, open_derived, print_run_location, run_datamodule, run_task

log = logging.getLogger("glassworks.explain")


def explain(cfg: DictConfig, tracker: Any, datamodule: Any = None, task: Any = None,
            model_run_id: str | None = None) -> ExplainResult:
    """Explain the model of ``model_run_id`` (default ``tracker.run_id``; its task and data from
    that run unless given) into ``tracker.run_id``."""
    return explain_stage.explain(tracker, task or run_task(tracker, model_run_id),
                                 run_datamodule(tracker, datamodule, model_run_id), explain_settings(cfg),
                                 model_run_id=model_run_id)


@hydra.main(version_base="1.3", config_path="../conf", config_name="explain")
def main(cfg: DictConfig) -> None:
    imports_done()  # a sweep worker (joblib, submitit) starts its job here
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        tracker = build_job(cfg, with_data=False).tracker
        source = open_derived(cfg, tracker, str(cfg.run_id), "explain", ["explain"])
        with tracker.lifecycle("explain"):
            start = time.perf_counter()
            result = explain(cfg, tracker, model_run_id=source.root_id)
            tracker.log_metrics({C.stage_time_key("explain"): time.perf_counter() - start})
        scores = {k.split("/")[0]: round(v, 3) for k, v in result.metrics.items() if k.endswith("/comprehensiveness")}
        print_run_location(tracker, done=f"pipeline.explain finished: {result.n_examples} "
                                         f"examples, comprehensiveness {scores}; see {C.EXPLAIN_INDEX} in the "
                                         f"derived run below (run {source.run_id} is unchanged)")


if __name__ == "__main__":
    imports_done()
    main()
