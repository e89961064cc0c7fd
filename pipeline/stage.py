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
from omegaconf.errors import MissingMandatoryValue

from glassworks.data.errors import DataError
from glassworks.explain.settings import ExplainSettings, RobustnessSettings, check_settings
from glassworks.training.trainer_args import check_trainer_args
from glassworks.tracking.dataset import dataset_inputs
from glassworks.tracking.run_ids import RunIdError, resolve_run_id
from glassworks.tracking.store import StoreUnreachable
from glassworks.tracking.metadata import command_line, environment, git_state, redact
from glassworks.validation import ConfigError
from pipeline.callbacks import in_multirun, sweep_child

log = logging.getLogger("glassworks")
REPO_DIR = Path(__file__).resolve().parents[1]

# Trainer arguments Lightning range-checks in its constructor but only uses (and trips over, deep
# inside fit) later: a string here must fail before the run, named by its key.
_TRAINER_TYPES: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("max_epochs", "min_epochs", "max_steps", "min_steps", "log_every_n_steps",
                     "check_val_every_n_epoch", "accumulate_grad_batches", "num_sanity_val_steps"),
                    (int,)),
    **dict.fromkeys(("gradient_clip_val", "val_check_interval", "limit_train_batches",
                     "limit_val_batches", "limit_test_batches", "limit_predict_batches",
                     "overfit_batches"), (int, float)),
}
_TORCH_ARGUMENT_WORDS = (("learning rate", "lr"), ("epsilon", "eps"), ("beta", "betas"),
                         ("weight_decay", "weight_decay"), ("momentum", "momentum"))


RUN_ID_KEYS = ("run_id", "sweep_id", "resume", "reproduce.against")  # config keys that name a run


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
    callbacks: list[Any] = field(default_factory=list)
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
    _check_type("seed", cfg.seed, (int,))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    tracker = build(cfg.logger, "logger")
    try:
        tracker.check()
    except StoreUnreachable as error:
        raise UserError(f"invalid config logger.tracking_uri: {error}") from error
    if tracker.enabled:  # short ids (as report folders show them) become full ones before anything reads them
        _resolve_run_ids(cfg, tracker)
    job = Job(cfg=cfg, tracker=tracker)
    if "model" in cfg:
        job.model_config = build(cfg.model, "model")
    if "optimizer" in cfg:
        job.optimizer = build(cfg.optimizer, "optimizer")
        job.scheduler = build(cfg.scheduler, "scheduler") if cfg.get("scheduler") else None
        _check_optimizer(job)
    # Built here, not in the train stage: a bad callback value must fail before the run exists.
    job.callbacks = [build(node, f"callbacks.{name}") for name, node in (cfg.get("callbacks") or {}).items()
                     if node is not None]
    if cfg.get("trainer") is not None:
        check_trainer_args(cfg.trainer)  # a misspelled key fails here, not when training starts
    for key, types in _TRAINER_TYPES.items():
        if cfg.get("trainer") is not None and cfg.trainer.get(key) is not None:
            _check_type(f"trainer.{key}", cfg.trainer[key], types)
    if cfg.get("explain") is not None:
        _check_explain(cfg.explain)
    robust = cfg.get("robustness")
    if robust is not None:
        _settings(RobustnessSettings, robust, "robustness")
    if robust is not None and robust.get("enabled", True) and robust.get("attack") is not None:
        build(robust.attack, "robustness.attack")
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


def _resolve_run_ids(cfg: DictConfig, tracker: Any) -> None:
    for key in RUN_ID_KEYS:
        ref = OmegaConf.select(cfg, key)
        if ref and str(ref) != "last":
            try:
                OmegaConf.update(cfg, key, resolve_run_id(tracker.client, str(ref), key))
            except RunIdError as error:
                raise UserError(f"{error} in {redact(tracker.uri)}") from error


def _check_type(key: str, value: Any, types: tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, types):
        expected = " or ".join(t.__name__ for t in types)
        raise UserError(f"invalid config {key}: expected {expected}, got {value!r} ({type(value).__name__})")


def _check_explain(explain_cfg: DictConfig) -> None:
    """Unknown methods and bad budgets fail here, not after training (pipeline.run) or after a
    finished run was reopened (pipeline.explain), where they would mark the run FAILED."""
    _settings(ExplainSettings, explain_cfg, "explain")
    known = [k for k in explain_cfg if isinstance(explain_cfg[k], DictConfig)]
    unknown = [m for m in explain_cfg.methods if m not in known]
    if unknown:
        raise UserError(f"invalid config explain.methods: unknown method(s) {unknown}; choose from {known}")
    for method in explain_cfg.methods:
        build(explain_cfg[method], f"explain.{method}", pad_id=0)  # the real pad id comes with the model


def _settings(cls: type, node: DictConfig, prefix: str) -> None:
    try:
        check_settings(cls, node, prefix)
    except ConfigError as error:
        raise UserError(f"invalid config {error}") from error


def _check_optimizer(job: Job) -> None:
    """Construct optimizer and schedule once on a dummy parameter: torch's own checks
    (negative lr, bad betas) then fire here, before a run exists, named by key."""
    arguments = getattr(job.optimizer, "keywords", {})  # a functools.partial (_partial_: true)
    for key in ("lr", "weight_decay", "eps", "momentum"):
        if arguments.get(key) is not None:
            _check_type(f"optimizer.{key}", arguments[key], (int, float))
    dummy = [torch.nn.Parameter(torch.zeros(1))]
    try:
        opt = job.optimizer(dummy)
    except (ValueError, TypeError) as error:
        # torch names the argument in words ("Invalid learning rate: -1"); the user needs the key.
        key = next((k for words, k in _TORCH_ARGUMENT_WORDS if words in str(error)), None)
        raise UserError(f"invalid config optimizer{'.' + key if key else ''}: {error}") from error
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
        raise UserError(f"run_id={run_id}: no such run in {redact(tracker.uri)} ({type(error).__name__})") from error
    if run.info.status != "FINISHED":
        task = run.data.tags.get("glassworks.task")
        hint = f"; continue it with python -m pipeline.{task} resume={run_id}" if task in ("run", "train") else ""
        raise UserError(f"run_id={run_id}: run is {run.info.status}, not FINISHED{hint}")
    return run


def require_artifact(tracker: Any, run_id: str, path: str, hint: str) -> None:
    """A later stage's input, checked before it reopens the run: a run that lacks it must stay
    FINISHED rather than turn FAILED."""
    if path not in [a.path for a in tracker.client.list_artifacts(run_id, str(Path(path).parent))]:
        raise UserError(f"run_id={run_id}: has no {path} artifact; {hint}")


@contextmanager
def clean_errors(cfg: DictConfig) -> Iterator[None]:
    """Bad input -> one message on stderr and exit 2 (under -m: this job fails, the sweep goes
    on); the full traceback only with debug=traceback."""
    try:
        yield
    except (UserError, ConfigError, DataError, MissingMandatoryValue) as error:
        if cfg.get("traceback"):
            raise
        if isinstance(error, MissingMandatoryValue):
            error = UserError(f"missing value for {error.full_key}: give {error.full_key}=<value>")
        print(f"error: {error}", file=sys.stderr)
        if in_multirun():
            # sys.exit would end the whole sweep: as an exception only this job fails.
            raise JobInputError(str(error)) from error
        sys.exit(2)


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
