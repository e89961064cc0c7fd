"""Config -> validated objects, before any run exists: python objects for every cfg group.
(Not an entry point; a little over 150 lines because every cross-group rule lives here.)

Order matters: everything that can be wrong with the config or the data is found in
:func:`build_job`, before :func:`pipeline.stage.open_run` creates anything in MLflow. Errors
name the config key (:class:`glassworks.validation.UserError`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.callbacks.progress import ProgressBar as ProgressBarCallback

from glassworks.data.errors import DataError
from glassworks.tasks.base import Task
from glassworks.tasks.classify import ClassifyTask
from glassworks.tracking.ranks import for_this_rank
from glassworks.stages.settings import RobustnessSettings, check_settings
from glassworks.tracking import contract as C
from glassworks.tracking.metadata import redact
from glassworks.tracking.run_ids import RunIdError, resolve_run_id
from glassworks.tracking.store import StoreUnreachable
from glassworks.training.distributed import LaunchRank
from glassworks.training.trainer_args import check_placement, check_trainer_args, check_trainer_values
from glassworks.validation import ConfigError, UserError
from pipeline.arguments import RUN_ID_KEYS

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

log = logging.getLogger("glassworks")

# The sections of the stages after training. conf/train.yaml composes them so that an experiment
# (which may pick explain=lm or set explain.n_examples) composes under pipeline.train as under
# pipeline.run; a job of the train stage alone neither checks, logs nor reports them.
LATER_STAGES = ("explain", "robustness")


def without_later_stages(cfg: DictConfig) -> DictConfig:
    """``cfg`` without :data:`LATER_STAGES` when its task is the train stage alone (in place)."""
    if cfg.get("task_name") == "train":
        with open_dict(cfg):
            for key in LATER_STAGES:
                cfg.pop(key, None)
    return cfg


@dataclass
class Job:
    cfg: DictConfig
    tracker: Any
    datamodule: Any = None
    model_config: Any = None
    optimizer: Any = None
    scheduler: Any = None
    task: Task = field(default_factory=ClassifyTask)
    callbacks: list[Any] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


def unexpected_keyword(error: BaseException) -> str | None:
    """The argument a TypeError says a callable does not take (a config key it was given)."""
    found = re.search(r"unexpected keyword argument '(\w+)'", str(error))
    return found.group(1) if found else None


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
        if isinstance(cause, TypeError) and (bad := unexpected_keyword(cause)):
            raise UserError(f"unknown config key {where}.{bad}") from error
        raise UserError(f"invalid config {where}: {cause or error}") from error


def checked_tracker(logger_cfg: DictConfig) -> Any:
    """The tracker `logger_cfg` (the ``logger`` group) builds, its store checked reachable."""
    tracker = build(logger_cfg, "logger")
    try:
        tracker.check()
    except StoreUnreachable as error:
        raise UserError(f"invalid config logger.tracking_uri: {error}") from error
    return tracker


def build_job(cfg: DictConfig, with_data: bool = True, tracker: Any = None) -> Job:
    """Validate everything (config values, cross-group rules, the data) before any run exists.
    `tracker`: one already built from ``cfg.logger`` by :func:`checked_tracker` (a resumed job's)."""
    cfg = without_later_stages(cfg)
    _check_type("seed", cfg.seed, (int,))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    _set_torch_threads(cfg.get("torch_threads"))
    # under torchrun/srun only global rank 0 tracks
    tracker = for_this_rank(tracker if tracker is not None else checked_tracker(cfg.logger))
    if tracker.enabled:  # short ids (as report folders show them) become full ones before anything reads them
        _resolve_run_ids(cfg, tracker)
    job = Job(cfg=cfg, tracker=tracker, task=build_task(cfg.get("task")))
    if tracker.enabled and cfg.get("run_id") and "task" not in cfg and cfg.get("explain") is not None:
        job.task = _fit_to_the_runs_task(cfg, tracker)  # pipeline.explain|robustness run_id=...
    if "model" in cfg:
        job.model_config = build(cfg.model, "model")
    if "optimizer" in cfg:
        job.optimizer = build(cfg.optimizer, "optimizer")
        job.scheduler = build(cfg.scheduler, "scheduler") if cfg.get("scheduler") else None
        _check_optimizer(job)
    # Built here, not in the train stage: a bad callback value must fail before the run exists.
    job.callbacks = [build(node, f"callbacks.{name}") for name, node in (cfg.get("callbacks") or {}).items()
                     if node is not None]
    if cfg.get("trainer") is not None and cfg.trainer.get("enable_progress_bar") is False:
        # +trainer.enable_progress_bar=false means no bar: Lightning would refuse the configured one.
        job.callbacks = [c for c in job.callbacks if not isinstance(c, ProgressBarCallback)]
    if cfg.get("trainer") is not None:
        check_trainer_args(cfg.trainer)  # a misspelled key fails here, not when training starts
    for key, types in _TRAINER_TYPES.items():
        if cfg.get("trainer") is not None and cfg.trainer.get(key) is not None:
            _check_type(f"trainer.{key}", cfg.trainer[key], types)
    if cfg.get("trainer") is not None:
        try:  # values Lightning refuses (max_epochs=-5) fail here, not once the run exists
            trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
            check_trainer_values(trainer_args)
            check_placement(trainer_args, LaunchRank.from_env().external, torch.cuda.device_count())
        except ConfigError as error:
            raise UserError(f"invalid config {error}") from error
    if cfg.get("explain") is not None:
        job.task.check_explainers(_check_explain(cfg.explain))
    from pipeline import plans  # plans builds with this module's build(): imported here, not at the top

    if cfg.get("explain") is not None:
        plans.explain_settings(cfg)

    robust = cfg.get("robustness")
    if robust is not None:  # its own values, even when disabled or without an attack
        try:
            check_settings(RobustnessSettings, robust, "robustness")
        except ConfigError as error:
            raise UserError(f"invalid config {error}") from error
    if robust is not None and robust.get("enabled", True) and robust.get("attack") is not None:
        plans.robustness_settings(cfg)  # builds the attack too
    if cfg.get("report") is not None and cfg.report.get("enabled", True):
        plans.report_settings(cfg)
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
        # A pretrained model tokenises its data with its own tokenizer (model=hf, model=minilm).
        model_tokenizer = getattr(job.model_config, "tokenizer", None)
        if callable(model_tokenizer):
            job.datamodule.set_tokenizer(model_tokenizer())
        try:
            job.datamodule.prepare()
        except DataError as error:
            raise UserError(str(error)) from error
        check_vocabulary = getattr(job.model_config, "check_vocabulary", None)  # a pretrained causal LM
        if callable(check_vocabulary):
            try:
                check_vocabulary(job.datamodule.vocab_size)
            except ConfigError as error:
                raise UserError(f"invalid config model.{error}") from error
    return job


def progress_bar_default(cfg: DictConfig, callbacks: list[Any]) -> dict[str, Any]:
    """What the trainer is built with besides its config: no progress bar when none is configured
    (``callbacks.rich_progress_bar=null``, ``callbacks=none``) and ``trainer.enable_progress_bar``
    is not set. Lightning would otherwise add its own bar, drawn after every batch; set
    ``+trainer.enable_progress_bar=true`` for that one."""
    if any(isinstance(c, ProgressBarCallback) for c in callbacks) or cfg.trainer.get("enable_progress_bar") is not None:
        return {}
    return {"enable_progress_bar": False}


def _set_torch_threads(threads: Any) -> None:
    """``torch_threads``: set before the run opens, so its ``torch.threads`` tag is the real count."""
    if threads is None:
        return
    _check_type("torch_threads", threads, (int,))
    if threads < 1:
        raise UserError(f"invalid config torch_threads: must be >= 1 (or null for torch's default), got {threads}")
    torch.set_num_threads(threads)


def _fit_to_the_runs_task(cfg: DictConfig, tracker: Any) -> Task:
    """The task of the run a derived stage works on (its root's: the model's), whose explainers
    the command's ``explain`` node must hold. Each stage option the command line left at its
    default is the one that task takes (``Task.stage_options``), in place: ``pipeline.explain
    run_id=<an lm run>`` explains with ``explain=lm``, its other overrides kept."""
    from hydra.core.hydra_config import HydraConfig

    from glassworks.tracking.derived import derived_source
    from pipeline.compose import option_node

    root_id = derived_source(tracker, str(cfg.run_id)).root_id
    if C.CONFIG not in {a.path for a in tracker.client.list_artifacts(root_id, C.CONFIG_DIR)}:
        return build_task(None)  # no logged config: the stage says what the run lacks
    task = run_task(tracker, root_id)
    if not HydraConfig.initialized():
        return task
    hydra_cfg = HydraConfig.get()
    named = {o.split("=", 1)[0].lstrip("+~") for o in hydra_cfg.overrides.task}
    for group, option in task.stage_options.items():
        if group in cfg and group not in named and hydra_cfg.runtime.choices.get(group) != option:
            with open_dict(cfg):
                cfg[group] = option_node(group, option)
            log.info("run %s is a task=%s run: %s=%s (name another %s=... to choose)", str(cfg.run_id)[:8],
                     task.name, group, option, group)
    return task


def logged_config(tracker: Any, run_id: str | None = None) -> DictConfig:
    """The config the tracker's run (or ``run_id``) was made with (``config/config.yaml``)."""
    return OmegaConf.load(tracker.download(C.CONFIG, run_id))


def run_task(tracker: Any, run_id: str | None = None) -> Task:
    """The task of the tracker's run (or ``run_id``), from its logged config."""
    return build_task(logged_config(tracker, run_id).get("task"))


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


def _check_explain(explain_cfg: DictConfig) -> dict[str, Any]:
    """Unknown methods and bad budgets fail here, not after training (pipeline.run) or after a
    finished run was reopened (pipeline.explain), where they would mark the run FAILED."""
    known = [k for k in explain_cfg if isinstance(explain_cfg[k], DictConfig)]
    unknown = [m for m in explain_cfg.methods if m not in known]
    if unknown:
        raise UserError(f"invalid config explain.methods: unknown method(s) {unknown}; choose from {known}")
    # the real pad id comes with the model; the task checks the nodes are its kind of method
    return {method: build(explain_cfg[method], f"explain.{method}", pad_id=0) for method in explain_cfg.methods}


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
        key = unexpected_keyword(error) or next((k for words, k in _TORCH_ARGUMENT_WORDS if words in str(error)), None)
        raise UserError(f"invalid config optimizer{'.' + key if key else ''}: {error}") from error
    if job.scheduler is not None:
        try:
            job.scheduler(opt, total_steps=10)
        except (ValueError, TypeError) as error:
            raise UserError(f"invalid config scheduler: {error}") from error


def build_task(node: DictConfig | None) -> Task:
    """The ``task`` group's object; a config without one (a run logged before tasks existed)
    is a classifier, which is what every such run was."""
    if node is None:
        return ClassifyTask()
    task = build(node, "task")
    if not isinstance(task, Task):
        raise UserError(f"invalid config task._target_: {type(task).__name__} does not implement "
                        "glassworks.tasks.base.Task")
    return task
