"""resume=<run_id>|last: continue a killed job inside its own MLflow run.

The job runs again from the run's logged config (what was started is what continues), against
the store named on this command line. Training restarts from the run's resume checkpoint (see
``glassworks.training.resume``: weights, optimizer, loop and data position, RNG); stages that
the run already finished are skipped, so a job killed while explaining does not train again.
"""

from __future__ import annotations

import logging
from typing import Any

from mlflow.entities import Run
from omegaconf import DictConfig, OmegaConf, open_dict

from glassworks.tracking import contract as C
from glassworks.tracking.runs import resumable_run, stages_done
from glassworks.scratch import scratch_dir
from pipeline.requeue import earlier_attempt, in_sweep
from pipeline.stage import Job, UserError, checked_tracker, open_run

log = logging.getLogger("glassworks.resume")


def resume_config(cfg: DictConfig) -> tuple[DictConfig, Run | None, Any]:
    """(config to run, the run to continue, the tracker it looked with, for ``build_job``);
    ``cfg`` itself, None and None when there was nothing to look for. A sweep job started again
    (requeued after a preemption or a time limit) resumes the run its earlier attempt opened, as
    if given ``resume=<that run>`` (:mod:`pipeline.requeue`)."""
    sweep = None if cfg.get("resume") else in_sweep()
    if not cfg.get("resume") and sweep is None:
        return cfg, None, None
    tracker = checked_tracker(cfg.logger)
    if not tracker.enabled:
        if sweep is not None:
            return cfg, None, tracker
        raise UserError("resume: needs logger=mlflow, the run to continue lives in MLflow")
    if sweep is not None:
        earlier = earlier_attempt(*sweep, tracker.client)
        if earlier is None:
            return cfg, None, tracker
        log.warning("this sweep job ran before as run %s (%s): continuing it (requeued after a "
                    "preemption or a time limit)", earlier.info.run_id[:8], earlier.info.status)
        with open_dict(cfg):
            cfg.resume = earlier.info.run_id
    run = resumable_run(tracker, str(cfg.resume), str(cfg.task_name))
    run_id = run.info.run_id
    try:
        path = tracker.client.download_artifacts(run_id, C.CONFIG, str(scratch_dir("resume")))
    except Exception as error:  # noqa: BLE001 - MlflowException or OSError: the file isn't there
        raise UserError(f"resume={cfg.resume}: run {run_id} has no {C.CONFIG} (it died before "
                        "training started); start a new run instead") from error
    logged = OmegaConf.load(path)
    with open_dict(logged):
        # The store is this command's; everything else is the run's.
        logged.logger = OmegaConf.create(OmegaConf.to_container(cfg.logger, resolve=True))
        logged.resume = run_id
        logged.traceback = bool(cfg.get("traceback", False))
    log.info("resuming run %s (%s, %s)", run_id, run.info.run_name, run.info.status)
    return logged, run, tracker


def start_run(job: Job, resumed: Run | None) -> set[str]:
    """Open a new run, or reattach the resumed one; the stages it has already finished."""
    if resumed is None:
        open_run(job)
        return set()
    tracker, dm, run_id = job.tracker, job.datamodule, resumed.info.run_id
    logged = resumed.data.tags.get(C.TAG_DATA_DIGEST)
    if dm is not None and logged and logged != dm.digest:
        raise UserError(f"resume={run_id}: the data changed since the run started (digest "
                        f"{dm.digest[:12]}, the run's {logged[:12]}); a resumed run must see the same data")
    tracker.attach(run_id, resume=True)
    done = stages_done(resumed)
    log.info("run %s: stages already done: %s", run_id, sorted(done) or "none")
    return done
