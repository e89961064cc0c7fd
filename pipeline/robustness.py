"""Robustness stage: python -m pipeline.robustness run_id=<id> [robustness.attack.max_edits=3 ...]

Adversarial testing guided by the run's explanations: deletion/insertion curves and flip rates
per attribution method, an attribution-guided word-substitution attack, and the stability of
each explanation under prediction-preserving perturbations. Starts from what the run holds (the
model and ``explanations/attributions.parquet``), so it is the same code path inside
``pipeline.run`` and on a run explained earlier. Logs ``robustness/<method>/<metric>`` and the
folder ``robustness/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from glassworks.explain.robustness import RobustnessResult, RobustnessRunner
from glassworks.explain.table import explanations_from_table
from glassworks.tracking.pyfunc import load_run_model
from glassworks.scratch import scratch_dir, scratch_session
from pipeline.stage import build, build_job, clean_errors, finished_run, print_run_location, require_artifact

log = logging.getLogger("glassworks.robustness")


ATTRIBUTIONS = "explanations/attributions.parquet"


def robustness(cfg: DictConfig, tracker: Any) -> RobustnessResult:
    loaded = load_run_model(tracker.run_id, tracker.uri)
    table = pd.read_parquet(tracker.download(ATTRIBUTIONS))  # main() checked that it exists
    examples, explanations = explanations_from_table(table)
    pad_id = loaded.tokenizer.pad_id
    # Stability re-runs the explainers themselves, configured as in the explain stage.
    explainers = {m: build(cfg.explain[m], f"explain.{m}", pad_id=pad_id)
                  for m in explanations if m in cfg.explain and m != "methods"}
    rcfg = cfg.robustness
    runner = RobustnessRunner(
        curve_k=rcfg.curve_k, attack=build(rcfg.attack, "robustness.attack"),
        n_stability=rcfg.n_stability, seed=rcfg.seed, mask_id=loaded.tokenizer.mask_id,
        pad_id=pad_id, stability_examples=rcfg.stability_examples,
        max_html_examples=rcfg.max_html_examples)
    out_dir = scratch_dir("robustness")
    result = runner.run(loaded.model, examples, explanations, explainers,
                        loaded.tokenizer.id_to_token, loaded.label_names, out_dir,
                        token_to_id=loaded.tokenizer.token_to_id)
    tracker.log_metrics({f"robustness/{k}": v for k, v in result.metrics.items() if np.isfinite(v)})
    tracker.log_artifacts(out_dir, "robustness")
    log.info("robustness results logged to %s", tracker.artifact_uri("robustness"))
    return result


@hydra.main(version_base="1.3", config_path="../conf", config_name="robustness")
def main(cfg: DictConfig) -> None:
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        tracker = build_job(cfg, with_data=False).tracker
        finished_run(tracker, cfg.run_id)
        require_artifact(tracker, cfg.run_id, ATTRIBUTIONS, f"run pipeline.explain run_id={cfg.run_id} first")
        tracker.attach(cfg.run_id)
        with tracker.lifecycle("robustness"):
            result = robustness(cfg, tracker)
        print_run_location(tracker, done="pipeline.robustness finished: attack success " + str(
            {k.split("/")[0]: round(v, 3) for k, v in result.metrics.items() if k.endswith("attack_success")}))


if __name__ == "__main__":
    main()
