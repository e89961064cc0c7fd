"""The whole pipeline: python -m pipeline.run [overrides]   (after a crash: resume=<run_id>|last)

train -> explain -> robustness -> report, all inside ONE MLflow run (FINISHED only if every
stage succeeded). The explain stage reads the model back from the run's artifacts, the same path
as ``python -m pipeline.explain run_id=<id>``. Each finished stage is recorded on the run, so a
resumed job continues training from its checkpoint or skips straight to the stage that died.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from glassworks.scratch import scratch_session
from glassworks.stages import explain as explain_stage
from glassworks.stages import report as report_stage
from glassworks.stages import robustness as robustness_stage
from glassworks.stages import train as train_stage
from glassworks.tracking import contract as C
from glassworks.tracking.ranks import owns_run
from glassworks.tracking.runs import mark_done, run_metrics
from pipeline import imports_done
from pipeline.defaults import default_config
from pipeline.plans import explain_settings, report_settings, robustness_settings
from pipeline.requeue import requeued_when_preempted
from pipeline.resume import resume_config, start_run
from pipeline.stage import (UserError, build_job, clean_errors, objective, print_run_location, run_datamodule,
                            train_inputs)

log = logging.getLogger("glassworks.run")


def headline(task: Any, metrics: dict[str, Any]) -> str:
    """The task's headline metrics this run measured as ``key=value``, then the ones it did not
    (a text corpus has no answers to score and no gold evidence; test=false, no test split)."""
    measured = [f"{key}={float(metrics[key]):.4f}" for key in task.headline_metrics if key in metrics]
    missing = [key for key in task.headline_metrics if key not in metrics]
    return (", ".join(measured) or "no headline metric") + (
        f" (not measured in this run: {', '.join(missing)})" if missing else "")


def _no_metrics(_: Any) -> dict[str, float]:
    return {}


@hydra.main(version_base="1.3", config_path="../conf", config_name="run")
def main(cfg: DictConfig) -> float | None:
    imports_done()  # a sweep worker (joblib, submitit) starts its job here
    # no glassworks-* temp folder outlives the command; a submitit job that is preempted is requeued into its run
    with clean_errors(cfg), scratch_session(), requeued_when_preempted():
        cfg, resumed, tracker = resume_config(cfg)
        job = build_job(cfg, tracker=tracker)
        tracker = job.tracker
        if not tracker.enabled and cfg.explain.methods and owns_run():
            raise UserError("logger=none: the explain stage reads the model from MLflow; "
                            "use pipeline.train for untracked training, or explain.methods=[]")
        done = start_run(job, resumed)
        metrics: dict[str, Any] = run_metrics(tracker) if done else {}
        timings: dict[str, float] = {}
        written: dict[str, Any] = {}  # the report, for the last lines

        def stage(name: str, work: Callable[[], dict[str, float]], log_time: bool = True) -> None:
            if name in done:
                log.info("%s: done before the resume, skipped", name)
                return
            tracker.stage = name
            start = time.perf_counter()
            metrics.update(work())
            timings[C.stage_time_key(name)] = time.perf_counter() - start
            if log_time:
                # Each stage's time as it ends: a later stage may die, and the report shows them.
                tracker.log_metrics({C.stage_time_key(name): timings[C.stage_time_key(name)]})
            mark_done(tracker, name, done)

        with tracker.lifecycle("train"):
            stage("train", lambda: train_stage.train(train_inputs(job), tracker, resume=resumed is not None).metrics)
            if cfg.explain.methods and owns_run():  # other ranks of torchrun/srun only train
                stage("explain", lambda: C.prefixed(C.EXPLAIN_PREFIX, explain_stage.explain(
                    tracker, job.task, run_datamodule(tracker, job.datamodule), explain_settings(cfg)).metrics))
                if cfg.robustness.enabled:
                    stage("robustness", lambda: C.prefixed(C.ROBUSTNESS_PREFIX, robustness_stage.robustness(
                        tracker, job.task, robustness_settings(cfg)).metrics))
            if cfg.get("report") is not None and cfg.report.enabled and tracker.enabled and owns_run():
                # Last, so the report shows every stage's metrics and timings (its own time is
                # not logged: the report holds exactly the run's metrics).
                stage("report", lambda: _no_metrics(written.setdefault("report", report_stage.report(
                    tracker, tracker.run_id, job.task, report_settings(cfg),
                    lambda: run_datamodule(tracker, job.datamodule), default_config))), log_time=False)
        print_run_location(tracker, report=written.get("report"), done=(
            f"pipeline.run finished: {headline(job.task, metrics)}, stage seconds "
            f"{ {k.removeprefix('time/').removesuffix('_s'): round(v, 1) for k, v in timings.items()} }"))
    return objective(cfg, metrics)


if __name__ == "__main__":
    imports_done()
    main()
