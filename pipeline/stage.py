"""What every stage shares: turn cfg into validated objects, open the run, report errors clearly.

Order matters: everything that can be wrong with the config or the data is found in
:func:`build_job`, before :func:`open_run` creates anything in MLflow.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from glassworks.data.errors import DataError
from glassworks.tracking.dataset import dataset_inputs
from glassworks.tracking.store import StoreUnreachable
from glassworks.tracking.metadata import command_line, environment, git_state, redact
from glassworks.validation import ConfigError
from pipeline.callbacks import in_multirun, sweep_child

log = logging.getLogger("glassworks")
REPO_DIR = Path(__file__).resolve().parents[1]


class UserError(Exception):
    """Bad input from the user: printed as one message, never a traceback (unless debug)."""


class JobInputError(CompactHydraException):
    """A sweep job's bad input: Hydra reports it in one line, without a traceback."""


@dataclass
class Job:
    cfg: DictConfig
    tracker: Any
    datamodule: Any = None
    model_config: Any = None
    optimizer: Any = None
    scheduler: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


def build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate`` whose errors name the config key instead of a Hydra stack."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        match = re.search(r"full_key: (\S+)", str(error))
        where = match.group(1) if match else key
        if isinstance(cause, ConfigError):
            raise UserError(f"invalid config {where}.{cause.key}: {str(cause).split(': ', 1)[1]}") from error
        if isinstance(cause, DataError):
            raise UserError(str(cause)) from error
        if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause):
            bad = re.search(r"argument '(\w+)'", str(cause))
            raise UserError(f"unknown config key {where}.{bad.group(1) if bad else '?'}") from error
        raise UserError(f"invalid config {where}: {cause or error}") from error


def build_job(cfg: DictConfig, with_data: bool = True) -> Job:
    """Validate everything (config values, cross-group rules, the data) before any run exists."""
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    tracker = build(cfg.logger, "logger")
    try:
        tracker.check()
    except StoreUnreachable as error:
        raise UserError(f"invalid config logger.tracking_uri: {error}") from error
    job = Job(cfg=cfg, tracker=tracker)
    if "model" in cfg:
        job.model_config = build(cfg.model, "model")
    if "optimizer" in cfg:
        job.optimizer = build(cfg.optimizer, "optimizer")
        job.scheduler = build(cfg.scheduler, "scheduler") if cfg.get("scheduler") else None
        _check_optimizer(job)
    if with_data and "data" in cfg:
        max_positions = getattr(job.model_config, "max_positions", None)
        if max_positions is not None and cfg.data.max_length > max_positions:
            raise UserError(
                f"invalid config data.max_length: {cfg.data.max_length} exceeds "
                f"model.max_positions={max_positions}"
            )
        if cfg.data.max_length <= 1:
            raise UserError(f"invalid config data.max_length: must be > 1, got {cfg.data.max_length}")
        job.datamodule = build(cfg.data, "data")
        try:
            job.datamodule.prepare()
        except DataError as error:
            raise UserError(str(error)) from error
    return job


def _check_optimizer(job: Job) -> None:
    """Construct optimizer and schedule once on a dummy parameter: torch's own checks
    (negative lr, bad betas) then fire here, before a run exists, named by key."""
    dummy = [torch.nn.Parameter(torch.zeros(1))]
    try:
        opt = job.optimizer(dummy)
    except (ValueError, TypeError) as error:
        raise UserError(f"invalid config optimizer: {error}") from error
    if job.scheduler is not None:
        try:
            job.scheduler(opt, total_steps=10)
        except (ValueError, TypeError) as error:
            raise UserError(f"invalid config scheduler: {error}") from error


def overrides() -> list[str]:
    """The command line's overrides, credentials in URLs redacted: they are logged as tags."""
    return [redact(o) for o in HydraConfig.get().overrides.task] if HydraConfig.initialized() else []


def run_name(cfg: DictConfig) -> str:
    if cfg.get("run_name"):
        return str(cfg.run_name)
    model = HydraConfig.get().runtime.choices.get("model", "model") if HydraConfig.initialized() else "model"
    data = HydraConfig.get().runtime.choices.get("data", "data") if HydraConfig.initialized() else "data"
    return f"{cfg.task_name}-{model}-{data}-seed{cfg.seed}"


def open_run(job: Job) -> str | None:
    """Create the MLflow run and log everything known before training (the run contract)."""
    cfg, tracker, dm = job.cfg, job.tracker, job.datamodule
    tags = {
        "glassworks.seed": cfg.seed,
        "glassworks.overrides": " ".join(overrides()) or "(none)",
        "glassworks.command": command_line(),
        "glassworks.task": cfg.task_name,
        "mlflow.source.name": f"pipeline.{cfg.task_name}",
        "mlflow.source.type": "LOCAL",
        **git_state(REPO_DIR),
        **{f"glassworks.env.{k}": v for k, v in environment().items()},
        **{str(k): redact(str(v)) for k, v in (cfg.get("tags") or {}).items()},
    }
    if dm is not None:
        tags["glassworks.data.digest"] = dm.digest
        tags["glassworks.data.name"] = dm.name
    child = sweep_child(tracker.uri)  # under -m: a nested run of the sweep's parent, named after the job
    if child is not None:
        tags.update(child[1])
    run_id = tracker.start(child[0] if child else run_name(cfg), tags)
    if run_id is None:
        return None
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tracker.log_params(resolved)
    tracker.log_text(redact(OmegaConf.to_yaml(cfg, resolve=True)), "config/config.yaml")
    tracker.log_text("\n".join(overrides()) + "\n", "config/overrides.txt")
    output_dir = OmegaConf.select(HydraConfig.get(), "runtime.output_dir", default=None) \
        if HydraConfig.initialized() else None
    if output_dir:  # absent under the compose API (tests), present under @hydra.main
        hydra_dir = Path(output_dir) / ".hydra"
        for path in sorted(hydra_dir.glob("*.yaml")):  # Hydra's own files hold argv and overrides too
            tracker.log_text(redact(path.read_text(encoding="utf-8")), f"config/hydra/{path.name}")
    if dm is not None:
        frames = {split: dm.split_frame(split) for split in ("train", "validation", "test")}
        tracker.log_inputs(dataset_inputs(frames, dm.name, dm.source_uri, dm.digest))
        tracker.log_dict({"label_names": dm.label_names, **dm.stats}, "data/stats.json")
        tracker.log_params({"data.label_names": ",".join(dm.label_names)})
    log.info("MLflow run %s (%s)", run_id, redact(tracker.uri))
    return run_id


def finished_run(tracker: Any, run_id: str) -> Any:
    """The run a later stage works on: it must exist and have FINISHED."""
    if not tracker.enabled:
        raise UserError("this stage reads a run from MLflow: logger=none has no runs")
    try:
        run = tracker.client.get_run(run_id)
    except Exception as error:  # noqa: BLE001 - MlflowException or an unreachable store
        raise UserError(f"run_id={run_id}: no such run in {tracker.uri} ({type(error).__name__})") from error
    if run.info.status != "FINISHED":
        raise UserError(f"run_id={run_id}: run is {run.info.status}, not FINISHED")
    return run


@contextmanager
def clean_errors(cfg: DictConfig) -> Iterator[None]:
    """Bad input -> one message on stderr and exit 2 (under -m: this job fails, the sweep goes
    on); the full traceback only with debug=traceback."""
    try:
        yield
    except (UserError, ConfigError, DataError) as error:
        if cfg.get("traceback"):
            raise
        print(f"error: {error}", file=sys.stderr)
        if in_multirun():
            # sys.exit would end the whole sweep: as an exception only this job fails.
            raise JobInputError(str(error)) from error
        sys.exit(2)


def print_run_location(tracker: Any) -> None:
    if tracker.run_id is None:
        return
    print(redact(
        f"\nMLflow run {tracker.run_id} in {tracker.uri}\n"
        f"  open the UI:  {tracker.ui_command}\n"
        f"  then browse:  {tracker.run_url()}\n"
    ))
