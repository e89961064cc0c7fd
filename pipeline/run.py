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
from pipeline.callbacks import objective
from pipeline.explain import explain
from pipeline.report import report
from pipeline.resume import mark_done, resume_config, run_metrics, start_run
from pipeline.robustness import robustness
from pipeline.stage import UserError, build_job, clean_errors, print_run_location
from pipeline.train import train

log = logging.getLogger("glassworks.run")


def _no_metrics(_: Any) -> dict[str, float]:
    return {}


@hydra.main(version_base="1.3", config_path="../conf", config_name="run")
def main(cfg: DictConfig) -> float | None:
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        cfg, resumed = resume_config(cfg)
        job = build_job(cfg)
        tracker = job.tracker
        if not tracker.enabled and cfg.explain.methods:
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
            timings[f"time/{name}_s"] = time.perf_counter() - start
            if log_time:
                # Each stage's time as it ends: a later stage may die, and the report shows them.
                tracker.log_metrics({f"time/{name}_s": timings[f"time/{name}_s"]})
            mark_done(tracker, name, done)

        with tracker.lifecycle("train"):
            stage("train", lambda: train(job, resume=resumed is not None).metrics)
            if cfg.explain.methods:
                stage("explain", lambda: {f"explain/{k}": v for k, v in
                                          explain(cfg, tracker, job.datamodule).metrics.items()})
                if cfg.robustness.enabled:
                    stage("robustness", lambda: {f"robustness/{k}": v for k, v in
                                                 robustness(cfg, tracker).metrics.items()})
            if cfg.get("report") is not None and cfg.report.enabled:
                # Last, so the report shows every stage's metrics and timings (its own time is
                # not logged: the report holds exactly the run's metrics).
                stage("report", lambda: _no_metrics(written.setdefault(
                    "report", report(cfg, tracker, datamodule=job.datamodule))), log_time=False)
        print_run_location(tracker, report=written.get("report"), done=(
            f"pipeline.run finished: test/acc={metrics.get('test/acc', float('nan')):.4f}, stage seconds "
            f"{ {k.removeprefix('time/').removesuffix('_s'): round(v, 1) for k, v in timings.items()} }"))
    return objective(cfg, metrics)


if __name__ == "__main__":
    main()
