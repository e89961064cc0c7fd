"""The whole pipeline: python -m pipeline.run [overrides]

train -> explain -> robustness -> report, all inside ONE MLflow run (FINISHED only if every stage succeeded). The
explain stage reads the model back from the run's artifacts, the same path as
``python -m pipeline.explain run_id=<id>``.
"""

from __future__ import annotations

import logging
import time

import hydra
from omegaconf import DictConfig

from pipeline.callbacks import objective
from pipeline.explain import explain
from pipeline.report import report
from pipeline.robustness import robustness
from pipeline.stage import UserError, build_job, clean_errors, open_run, print_run_location
from pipeline.train import train

log = logging.getLogger("glassworks.run")


@hydra.main(version_base="1.3", config_path="../conf", config_name="run")
def main(cfg: DictConfig) -> float | None:
    with clean_errors(cfg):
        job = build_job(cfg)
        tracker = job.tracker
        if not tracker.enabled and cfg.explain.methods:
            raise UserError("logger=none: the explain stage reads the model from MLflow; "
                            "use pipeline.train for untracked training, or explain.methods=[]")
        open_run(job)
        timings: dict[str, float] = {}
        with tracker.lifecycle("train"):
            start = time.perf_counter()
            result = train(job)
            metrics = dict(result.metrics)
            timings["time/train_s"] = time.perf_counter() - start
            if cfg.explain.methods:
                tracker.stage = "explain"
                start = time.perf_counter()
                explained = explain(cfg, tracker, job.datamodule)
                metrics.update({f"explain/{k}": v for k, v in explained.metrics.items()})
                timings["time/explain_s"] = time.perf_counter() - start
                if cfg.robustness.enabled:
                    tracker.stage = "robustness"
                    start = time.perf_counter()
                    robust = robustness(cfg, tracker)
                    metrics.update({f"robustness/{k}": v for k, v in robust.metrics.items()})
                    timings["time/robustness_s"] = time.perf_counter() - start
            tracker.log_metrics(timings)
            if cfg.get("report") is not None and cfg.report.enabled:
                # Last, so the report shows every stage's metrics and timings.
                tracker.stage = "report"
                report(cfg, tracker, datamodule=job.datamodule)
        print_run_location(tracker)
        log.info("test/acc=%.4f  stage seconds: %s", result.metrics.get("test/acc", float("nan")),
                 {k: round(v, 1) for k, v in timings.items()})
    return objective(cfg, metrics)


if __name__ == "__main__":
    main()
