"""Robustness stage: python -m pipeline.robustness run_id=<id> [robustness.attack.max_edits=3 ...]

Adversarial testing guided by the run's explanations: deletion/insertion curves and flip rates
per attribution method, an attribution-guided word-substitution attack, and the stability of
each explanation under prediction-preserving perturbations. Starts from what the run holds (the
model and ``explanations/attributions.parquet``), so it is the same code path inside
``pipeline.run`` and on a run explained earlier (:mod:`glassworks.stages.robustness`). Logs
``robustness/<method>/<metric>`` and the folder ``robustness/``.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig

from glassworks.scratch import scratch_session
from glassworks.robustness import RobustnessResult
from glassworks.stages import robustness as robustness_stage
from glassworks.tracking import contract as C
from pipeline.plans import robustness_settings
from pipeline.stage import build_job, clean_errors, finished_run, print_run_location, require_artifact, run_task

log = logging.getLogger("glassworks.robustness")


def robustness(cfg: DictConfig, tracker: Any, task: Any = None) -> RobustnessResult:
    """Probe the explained model of ``tracker.run_id`` (its task from the run unless given)."""
    return robustness_stage.robustness(tracker, task or run_task(tracker), robustness_settings(cfg))


@hydra.main(version_base="1.3", config_path="../conf", config_name="robustness")
def main(cfg: DictConfig) -> None:
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        tracker = build_job(cfg, with_data=False).tracker
        finished_run(tracker, cfg.run_id)
        require_artifact(tracker, cfg.run_id, C.ATTRIBUTIONS, f"run pipeline.explain run_id={cfg.run_id} first")
        tracker.attach(cfg.run_id)
        with tracker.lifecycle("robustness"):
            result = robustness(cfg, tracker)
        print_run_location(tracker, done="pipeline.robustness finished: attack success " + str(
            {k.split("/")[0]: round(v, 3) for k, v in result.metrics.items() if k.endswith("attack_success")}))


if __name__ == "__main__":
    main()
