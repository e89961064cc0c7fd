"""Train stage: python -m pipeline.train [overrides]

Trains the configured task's model with Lightning inside one MLflow run; logs learning curves,
test metrics, checkpoints, tokenizer and the pyfunc model (:mod:`glassworks.stages.train`).
``pipeline.run`` runs the same library stage and continues with the later stages in the run.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from glassworks.scratch import scratch_session
from glassworks.stages import train as train_stage
from glassworks.tracking.runs import mark_done, run_metrics
from pipeline import imports_done
from pipeline.requeue import requeued_when_preempted
from pipeline.resume import resume_config, start_run
from pipeline.stage import Job, build_job, clean_errors, objective, print_run_location, train_inputs

log = logging.getLogger("glassworks.train")


def train(job: Job, resume: bool = False) -> train_stage.TrainResult:
    """The train stage on a built job (tests and benchmarks call it with a composed config)."""
    return train_stage.train(train_inputs(job), job.tracker, resume=resume)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    imports_done()  # a sweep worker (joblib, submitit) starts its job here
    # no glassworks-* temp folder outlives the command; a submitit job that is preempted is requeued into its run
    with clean_errors(cfg), scratch_session(), requeued_when_preempted():
        cfg, resumed, tracker = resume_config(cfg)
        job = build_job(cfg, tracker=tracker)
        done = start_run(job, resumed)
        with job.tracker.lifecycle("train"):
            if "train" in done:
                metrics = run_metrics(job.tracker)
            else:
                metrics = train(job, resume=resumed is not None).metrics
                mark_done(job.tracker, "train", done)
        tested = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k.startswith("test/"))
        print_run_location(job.tracker, done="pipeline.train finished: " + (tested or "no test split evaluated"))
    return objective(cfg, metrics)


if __name__ == "__main__":
    imports_done()
    main()
