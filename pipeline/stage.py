"""What every entry point shares: open the run from cfg, read a run's data and task back, report
errors clearly. Config -> objects lives in :mod:`pipeline.job`, the run queries in
:mod:`glassworks.tracking.runs`; both are re-exported here for the stages.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from glassworks.preemption import EXIT_STOPPED, interrupted, preempted, stopped_line
from glassworks.stages.train import TrainInputs
from glassworks.tracking import contract as C
from glassworks.tracking.derived import DerivedSource, derived_source, open_derived_run
from glassworks.tracking.metadata import redact
from glassworks.tracking.objective import objective_value
from glassworks.tracking.runs import RunStart, finished_run, require_artifact, require_model  # noqa: F401 - the stages' API
from glassworks.tracking.runs import open_run as open_library_run
from glassworks.tracking.store import StoreUnreachable
from glassworks.validation import UserError
from pipeline.hydra_context import hydra_files, in_multirun, in_sweep_process, overrides, run_name, sweep_child
from pipeline.requeue import preemption_signal
from pipeline.job import (Job, build, build_job, build_task, checked_tracker, logged_config,  # noqa: F401 - the stages' API
                          progress_bar_default, run_task)

log = logging.getLogger("glassworks")
REPO_DIR = Path(__file__).resolve().parents[1]


class JobInputError(CompactHydraException):
    """A sweep job's bad input: Hydra reports it in one line, without a traceback."""


def train_inputs(job: Job) -> TrainInputs:
    """The train stage's objects, from the job ``build_job`` validated."""
    cfg = job.cfg
    return TrainInputs(task=job.task, model_config=job.model_config, datamodule=job.datamodule,
                       optimizer=job.optimizer, scheduler=job.scheduler, callbacks=job.callbacks,
                       make_trainer=functools.partial(build, cfg.trainer, "trainer",
                                                      **progress_bar_default(cfg, job.callbacks)),
                       mask_token_prob=cfg.mask_token_prob, test=bool(cfg.test),
                       preemption_signal=preemption_signal())


def run_start(cfg: DictConfig, tracking_uri: str | None) -> RunStart:
    """What a new run records about how it was started, read from cfg and Hydra."""
    return RunStart(
        name=run_name(cfg), task_name=str(cfg.task_name), seed=cfg.seed,
        config=OmegaConf.to_container(cfg, resolve=True),
        config_yaml=redact(OmegaConf.to_yaml(cfg, resolve=True)), overrides=overrides(),
        repo_dir=REPO_DIR, user_tags=dict(cfg.get("tags") or {}), hydra_files=hydra_files(),
        sweep_child=sweep_child(tracking_uri))


def open_run(job: Job) -> str | None:
    """Create the job's MLflow run and log everything known before training (the run contract)."""
    return open_library_run(job.tracker, run_start(job.cfg, job.tracker.uri), job.datamodule)


def open_derived(cfg: DictConfig, tracker: Any, run_id: str, stage: str, sections: list[str],
                 required: tuple[str, str] | None = None) -> DerivedSource:
    """Later work on run ``run_id`` (``pipeline.explain|robustness``): check it, then open its
    derived child run in ``tracker``; ``sections`` are the config keys whose values are the
    stage's settings (logged as params where they differ from the parent's); ``required`` is
    (artifact folder, hint) that the run the folder comes from must hold, checked before any run
    is created. The parent is only read."""
    source = derived_source(tracker, run_id)
    if required is not None:
        path, hint = required
        require_artifact(tracker, source.holder_of(path.split("/")[0]), path, hint)
    require_model(tracker, source.root_id, "it was trained with logger.log_model=false")
    settings = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in sections}
    open_derived_run(tracker, source, stage, settings, overrides(),
                     redact(OmegaConf.to_yaml(cfg, resolve=True)), REPO_DIR)
    return source


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """What a stage's main returns to the sweeper: ``metrics[cfg.optimized_metric]``; a metric the
    job did not log is a warning in a sweep only (a single run's return value goes nowhere)."""
    return objective_value(str(cfg.get("optimized_metric") or "val/acc"), metrics, warn=in_multirun())


def run_datamodule(tracker: Any, datamodule: Any = None, run_id: str | None = None) -> Any:
    """The run's DataModule: the one in memory, or rebuilt from the logged config of the
    tracker's run (or ``run_id``)."""
    if datamodule is not None:
        return datamodule
    datamodule = build(logged_config(tracker, run_id).data, "data")
    datamodule.prepare()
    logged = tracker.client.get_run(run_id or tracker.run_id).data.tags.get(C.TAG_DATA_DIGEST)
    if logged and logged != datamodule.digest:
        log.warning("data digest %s differs from the run's %s: the data changed since training",
                    datamodule.digest, logged)
    return datamodule


@contextmanager
def clean_errors(cfg: DictConfig) -> Iterator[None]:
    """Bad input -> one message on stderr and exit 2 (under -m: this job fails, the sweep goes
    on); the full traceback only with debug=traceback. The one path for user-facing errors:
    everything a user can get wrong is a :class:`UserError` (ConfigError and DataError are kinds).
    A tracking server that stayed down past ``logger.server_timeout_s`` is not the user's mistake
    but is shown the same way (:class:`StoreUnreachable`: the run stays RUNNING, resume it)."""
    try:
        yield
    except (UserError, StoreUnreachable, MissingMandatoryValue) as error:
        if cfg.get("traceback"):
            raise
        if isinstance(error, MissingMandatoryValue):
            error = UserError(f"missing value for {error.full_key}: give {error.full_key}=<value>")
        print(f"error: {error}", file=sys.stderr)
        if in_multirun():
            # sys.exit would end the whole sweep: as an exception only this job fails.
            raise JobInputError(str(error)) from error
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as error:
        # Ctrl-C or SIGTERM (inside a fit Lightning turns it into SystemExit(1)): one line and exit
        # 130, not Python's traceback of wherever the stage stood. The run's KILLED line says how to
        # go on. Any other SystemExit is left alone.
        stop = interrupted(error)
        if stop is None or cfg.get("traceback") or preempted(stop):
            raise  # a preempted submitit job is requeued
        if in_multirun():
            # A sweep counts its interrupted jobs; in the sweep's own process the interrupt ends the
            # sweep, which says so in one line too (pipeline.sweep_callback).
            if in_sweep_process() and stop is not error:
                raise stop from None
            raise
        print(stopped_line(stop), file=sys.stderr)
        sys.exit(EXIT_STOPPED)


def print_run_location(tracker: Any, done: str | None = None, report: Any = None) -> None:
    """The command's last lines: what was done, the run, how to open it, the report (if written)."""
    if tracker.run_id is None:
        return
    lines = ["", done] if done else [""]
    lines += [f"MLflow run {tracker.run_id} in {tracker.uri}", f"  open the UI:  {tracker.ui_command}",
              f"  then browse:  {tracker.run_url()}"]
    if report is not None:
        lines.append(f"  report:       {report.html}")
    print(redact("\n".join(lines) + "\n"))
