"""Robustness stage: python -m pipeline.robustness run_id=<id> [robustness.attack.max_edits=3 ...]

Adversarial testing guided by the run's explanations: deletion/insertion curves and flip rates
per attribution method, an attribution-guided word-substitution attack, and the stability of
each explanation under prediction-preserving perturbations. Starts from what the run holds (the
model and ``explanations/attributions.parquet``), so it is the same code path inside
``pipeline.run`` and on a run explained earlier (:mod:`glassworks.stages.robustness`). Logs
``robustness/<method>/<metric>``, ``time/robustness_s`` and the folder ``robustness/`` into a NEW
child run of the given run (a derived run, :mod:`glassworks.tracking.derived`): the given run is
never rewritten. Given a derived explain run, it probes that run's explanations (the model is
its root's); given a trained run, the run's own.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from glassworks.scratch import scratch_session
from glassworks.robustness import RobustnessResult
from glassworks.stages import robustness as robustness_stage
from glassworks.tracking import contract as C
from glassworks.tracking.derived import DerivedSource, derived_source
from pipeline import imports_done
from pipeline.plans import robustness_settings
from pipeline.hydra_context import overrides
from pipeline.stage import build_job, clean_errors, open_derived, print_run_location, run_task

log = logging.getLogger("glassworks.robustness")


def robustness(cfg: DictConfig, tracker: Any, task: Any = None, model_run_id: str | None = None,
               explanations_run_id: str | None = None) -> RobustnessResult:
    """Probe the model of ``model_run_id`` guided by the explanations of ``explanations_run_id``
    (both default to ``tracker.run_id``; the task from the model's run unless given), into
    ``tracker.run_id``."""
    return robustness_stage.robustness(tracker, task or run_task(tracker, model_run_id), robustness_settings(cfg),
                                       model_run_id=model_run_id, explanations_run_id=explanations_run_id)


@hydra.main(version_base="1.3", config_path="../conf", config_name="robustness")
def main(cfg: DictConfig) -> None:
    imports_done()  # a sweep worker (joblib, submitit) starts its job here
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        tracker = build_job(cfg, with_data=False).tracker
        cfg = explained_alike(cfg, tracker, derived_source(tracker, str(cfg.run_id)), overrides())
        source = open_derived(cfg, tracker, str(cfg.run_id), "robustness", ["robustness", "explain"],
                              required=(C.ATTRIBUTIONS, f"run pipeline.explain run_id={cfg.run_id} first"))
        with tracker.lifecycle("robustness"):
            start = time.perf_counter()
            task = run_task(tracker, source.root_id)
            result = robustness(cfg, tracker, task, model_run_id=source.root_id,
                                explanations_run_id=source.holder_of(C.EXPLANATIONS_DIR))
            tracker.log_metrics({C.stage_time_key("robustness"): time.perf_counter() - start})
        print_run_location(tracker, done=f"pipeline.robustness finished: {finished_line(task, result.metrics)} "
                                         f"(run {source.run_id} is unchanged)")


def explained_alike(cfg: DictConfig, tracker: Any, source: DerivedSource, given: list[str]) -> DictConfig:
    """``cfg`` with the ``explain`` settings the probed explanations were made with (a derived
    explain run's, e.g. ``explain.shap.algorithm=exact``; else the trained run's), and this
    command's own ``explain.*`` overrides (`given`) on top. Stability explains perturbed copies of
    the examples with these settings and compares them with the originals: until 2026-12-03 it used
    this command's defaults, and scored exact-SHAP originals against partition-SHAP copies."""
    if any(o.lstrip("+~").startswith("explain=") for o in given):
        return cfg  # another explain group chosen: this command's settings throughout
    holder = source.holder_of(C.EXPLANATIONS_DIR)
    if not tracker.client.list_artifacts(holder, C.EXPLANATIONS_DIR):
        return cfg  # nothing explained: open_derived refuses the run, naming the stage to run first
    logged = OmegaConf.load(tracker.download(C.CONFIG if holder == source.root_id else C.STAGE_CONFIG, holder))
    if logged.get("explain") is None:
        return cfg
    explain = logged.explain
    for override in given:
        key = override.lstrip("+~").partition("=")[0]
        if key.startswith("explain."):
            OmegaConf.update(explain, key.removeprefix("explain."), OmegaConf.select(cfg, key), force_add=True)
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.explain = explain
    return cfg


def finished_line(task: Any, metrics: dict[str, float]) -> str:
    """The task's robustness headline per method: "attack_success {'shap': 0.9, ...}"."""
    name = task.robustness_headline
    return f"{name} " + str({k.split("/")[0]: round(v, 3) for k, v in metrics.items() if k.endswith(f"/{name}")})


if __name__ == "__main__":
    imports_done()
    main()
