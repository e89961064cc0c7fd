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

from glassworks.tracking.metadata import redact
from glassworks.tracking.run_ids import RunIdError, resolve_run_id
from glassworks.tracking.store import StoreUnreachable
from glassworks.training.checkpoint_io import remove_partial_writes
from glassworks.training.resume import ResumeCheckpoint
from glassworks.scratch import scratch_dir
from pipeline.stage import Job, UserError, build, open_run

log = logging.getLogger("glassworks.resume")

STAGES_TAG = "glassworks.stages_done"


def resume_config(cfg: DictConfig) -> tuple[DictConfig, Run | None]:
    """(config to run, the run to continue); ``cfg`` itself and None when not resuming."""
    if not cfg.get("resume"):
        return cfg, None
    tracker = build(cfg.logger, "logger")
    if not tracker.enabled:
        raise UserError("resume: needs logger=mlflow, the run to continue lives in MLflow")
    try:
        tracker.check()
    except StoreUnreachable as error:
        raise UserError(f"invalid config logger.tracking_uri: {error}") from error
    run = _find_run(tracker, str(cfg.resume), str(cfg.task_name))
    run_id = run.info.run_id
    try:
        path = tracker.client.download_artifacts(run_id, "config/config.yaml", str(scratch_dir("resume")))
    except Exception as error:  # noqa: BLE001 - MlflowException or OSError: the file isn't there
        raise UserError(f"resume={cfg.resume}: run {run_id} has no config/config.yaml (it died before "
                        "training started); start a new run instead") from error
    logged = OmegaConf.load(path)
    with open_dict(logged):
        # The store is this command's; everything else is the run's.
        logged.logger = OmegaConf.create(OmegaConf.to_container(cfg.logger, resolve=True))
        logged.resume = run_id
        logged.traceback = bool(cfg.get("traceback", False))
    log.info("resuming run %s (%s, %s)", run_id, run.info.run_name, run.info.status)
    return logged, run


def _find_run(tracker: Any, ref: str, task: str) -> Run:
    client = tracker.client
    if ref == "last":
        experiment = client.get_experiment_by_name(tracker.experiment_name)
        runs = [] if experiment is None else client.search_runs(
            [experiment.experiment_id],
            filter_string=f"attributes.status != 'FINISHED' and tags.`glassworks.task` = '{task}'",
            order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise UserError(f"resume=last: no unfinished run of pipeline.{task} in experiment "
                            f"{tracker.experiment_name!r} of {redact(tracker.uri)}")
        run = runs[0]
    else:
        try:
            run = client.get_run(resolve_run_id(client, ref, "resume"))
        except RunIdError as error:
            raise UserError(f"{error} in {redact(tracker.uri)}") from error
        except Exception as error:  # noqa: BLE001 - MlflowException: no such run
            raise UserError(f"resume={ref}: no such run in {redact(tracker.uri)}") from error
    run_id = run.info.run_id
    if run.info.status == "FINISHED":
        raise UserError(f"resume={ref}: run {run_id} is FINISHED, nothing to resume")
    started_by = run.data.tags.get("glassworks.task")
    if started_by != task:
        raise UserError(f"resume={ref}: run {run_id} was started by pipeline.{started_by}; "
                        f"resume it with python -m pipeline.{started_by} resume={run_id}")
    return run


def start_run(job: Job, resumed: Run | None) -> set[str]:
    """Open a new run, or reattach the resumed one; the stages it has already finished."""
    if resumed is None:
        open_run(job)
        return set()
    tracker, dm, run_id, tags = job.tracker, job.datamodule, resumed.info.run_id, resumed.data.tags
    logged = tags.get("glassworks.data.digest")
    if dm is not None and logged and logged != dm.digest:
        raise UserError(f"resume={run_id}: the data changed since the run started (digest "
                        f"{dm.digest[:12]}, the run's {logged[:12]}); a resumed run must see the same data")
    tracker.attach(run_id, resume=True)
    done = {s for s in tags.get(STAGES_TAG, "").split(",") if s}
    log.info("run %s: stages already done: %s", run_id, sorted(done) or "none")
    return done


def mark_done(tracker: Any, stage: str, done: set[str]) -> None:
    done.add(stage)
    tracker.set_tags({STAGES_TAG: ",".join(sorted(done))})


def run_metrics(tracker: Any) -> dict[str, float]:
    """The latest value of every metric of the current run (a stage done before a resume)."""
    return dict(tracker.client.get_run(tracker.run_id).data.metrics)


def resume_checkpoint(keeper: ResumeCheckpoint | None) -> str | None:
    """The checkpoint ``keeper`` wrote to continue from; None: train from the start (in the same run)."""
    if keeper is None:
        log.warning("callbacks has no resume_checkpoint: training again from the start")
        return None
    for partial in remove_partial_writes(keeper.dirpath):
        log.warning("removed %s, a checkpoint write the crash interrupted", partial)
    if keeper.path.is_file():
        log.info("continuing from %s", keeper.path)
        return str(keeper.path)
    log.warning("no checkpoint in %s yet: training again from the start", keeper.dirpath)
    return None
