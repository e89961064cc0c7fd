"""Opening, finding and checking runs: the store queries every stage shares.

:func:`open_run` writes what is known before training (tags, params, config, data inputs; see
:mod:`glassworks.tracking.contract`); :func:`finished_run`, :func:`require_artifact` and :func:`require_model` check a
later stage's input before it reopens a run; :func:`resumable_run` finds the run a ``resume=``
continues; :func:`stages_done` / :func:`mark_done` record which pipeline stages finished.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from mlflow.entities import Run

from glassworks.tracking import contract as C
from glassworks.tracking.dataset import dataset_inputs
from glassworks.tracking.logged_model import has_run_model, run_model_uri
from glassworks.tracking.metadata import command_line, environment, git_state, redact
from glassworks.tracking.run_ids import RunIdError, resolve_run_id
from glassworks.validation import UserError

log = logging.getLogger("glassworks")
SPLITS = ("train", "validation", "test")


@dataclass
class RunStart:
    """Everything a new run records before training, as plain values (the entry point reads
    them from cfg and Hydra)."""

    name: str
    task_name: str                     # the entry point: run, train, ...
    seed: int
    config: dict[str, Any]             # the resolved config (logged flattened as params)
    config_yaml: str                   # the same, as YAML (config/config.yaml), redacted
    overrides: list[str]               # redacted command-line overrides
    repo_dir: Any                      # the checkout whose git state is recorded
    user_tags: Mapping[str, Any] = field(default_factory=dict)
    hydra_files: Mapping[str, str] = field(default_factory=dict)   # file name -> redacted text
    sweep_child: tuple[str, dict[str, str]] | None = None          # (run name, tags) under -m


def run_tags(start: RunStart) -> dict[str, Any]:
    return {
        C.TAG_SEED: start.seed,
        C.TAG_OVERRIDES: " ".join(start.overrides) or "(none)",
        C.TAG_COMMAND: command_line(),
        C.TAG_TASK: start.task_name,
        C.TAG_SOURCE_NAME: f"pipeline.{start.task_name}",
        C.TAG_SOURCE_TYPE: "LOCAL",
        **git_state(start.repo_dir),
        **{f"{C.TAG_ENV_PREFIX}{k}": v for k, v in environment().items()},
        **{str(k): redact(str(v)) for k, v in start.user_tags.items()},
    }


def open_run(tracker: Any, start: RunStart, datamodule: Any = None) -> str | None:
    """Create the MLflow run and log everything known before training (the run contract)."""
    tags = run_tags(start)
    if datamodule is not None:
        tags[C.TAG_DATA_DIGEST] = datamodule.digest
        tags[C.TAG_DATA_NAME] = datamodule.name
    if start.sweep_child is not None:  # under -m: a nested run of the sweep's parent
        tags.update(start.sweep_child[1])
    run_id = tracker.start(start.sweep_child[0] if start.sweep_child else start.name, tags)
    if run_id is None:
        return None
    tracker.log_params(start.config)
    tracker.log_text(start.config_yaml, C.CONFIG)
    tracker.log_text("\n".join(start.overrides) + "\n", C.CONFIG_OVERRIDES)
    for name, text in sorted(start.hydra_files.items()):  # Hydra's own files hold argv and overrides too
        tracker.log_text(text, f"{C.CONFIG_HYDRA_DIR}/{name}")
    if datamodule is not None:
        frames = {split: datamodule.split_frame(split) for split in SPLITS}
        tracker.log_inputs(dataset_inputs(frames, datamodule.name, datamodule.source_uri, datamodule.digest))
        tracker.log_dict({"label_names": datamodule.label_names, **datamodule.stats}, C.DATA_STATS)
        tracker.log_params({"data.label_names": ",".join(datamodule.label_names)})
    log.info("MLflow run %s (%s)", run_id, redact(tracker.uri))
    return run_id


def is_sweep_parent(run: Run) -> bool:
    """A sweep's parent run: it holds the sweep's summary, its children the trained models."""
    return run.data.tags.get(C.TAG_SWEEP_ROLE) == "parent"


def existing_run(tracker: Any, key: str, run_id: str) -> Run:
    """The run ``key=run_id`` names; a UserError naming the key and the store when there is none."""
    try:
        return tracker.client.get_run(run_id)
    except Exception as error:  # noqa: BLE001 - MlflowException or an unreachable store
        raise UserError(f"{key}={run_id}: no such run in {redact(tracker.uri)} ({type(error).__name__})") from error


def finished_run(tracker: Any, run_id: str) -> Run:
    """The run a later stage works on: it must exist, be a run that trained (not a sweep's
    parent) and have FINISHED."""
    if not tracker.enabled:
        raise UserError("this stage reads a run from MLflow: logger=none has no runs")
    run = existing_run(tracker, "run_id", run_id)
    if is_sweep_parent(run):
        best = run.data.tags.get(C.TAG_SWEEP_BEST_RUN_ID)
        raise UserError(f"run_id={run_id}: the parent run of sweep {run.info.run_name}, which trains nothing itself; "
                        "give one of its children" + (f" (the best: run_id={best[:8]})" if best else "")
                        + f"; python -m pipeline.report sweep_id={run_id[:8]} lists them all")
    if run.info.status != "FINISHED":
        command = C.resume_command(run.data.tags.get(C.TAG_TASK), run_id)
        hint = f"; continue it with {command}" if command else ""
        if is_derived(run):
            hint = f"; it is a derived run, make it again with: {rerun_command(run)}"
        raise UserError(f"run_id={run_id}: run is {run.info.status}, not FINISHED{hint}")
    return run


def require_artifact(tracker: Any, run_id: str, path: str, hint: str) -> None:
    """A later stage's input, checked before it reopens the run: a run that lacks it must stay
    FINISHED rather than turn FAILED."""
    if path not in [a.path for a in tracker.client.list_artifacts(run_id, str(PurePosixPath(path).parent))]:
        raise UserError(f"run_id={run_id}: has no {path} artifact; {hint}")


def require_model(tracker: Any, run_id: str, hint: str) -> None:
    """The run's LoggedModel, checked like :func:`require_artifact` before a stage reopens the run."""
    if not has_run_model(tracker.uri, run_id):
        raise UserError(f"run_id={run_id}: has no logged model {run_model_uri(run_id)}; {hint}")


def resumable_run(tracker: Any, ref: str, task: str) -> Run:
    """The unfinished run ``resume=<ref>`` continues: a run id, or ``last`` (the newest unfinished
    run of entry point ``task`` in the tracker's experiment)."""
    client = tracker.client
    if ref == "last":
        experiment = client.get_experiment_by_name(tracker.experiment_name)
        runs = [] if experiment is None else client.search_runs(
            [experiment.experiment_id],
            filter_string=f"attributes.status != 'FINISHED' and tags.`{C.TAG_TASK}` = '{task}'",
            order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise UserError(f"resume=last: no unfinished run of pipeline.{task} in experiment "
                            f"{tracker.experiment_name!r} of {redact(tracker.uri)}")
        run = runs[0]
    else:
        try:
            run_id = resolve_run_id(client, ref, "resume")
        except RunIdError as error:
            raise UserError(f"{error} in {redact(tracker.uri)}") from error
        run = existing_run(tracker, "resume", run_id)
    run_id = run.info.run_id
    if is_derived(run):
        raise UserError(f"resume={ref}: run {run_id} is a derived {run.data.tags.get(C.TAG_DERIVED_STAGE)} run "
                        f"({run.info.status}) of run {run.data.tags.get(C.TAG_DERIVED_FROM)}, which it never "
                        f"changed; a derived run is not resumed but made again: {rerun_command(run)}")
    if run.info.status == "FINISHED":
        raise UserError(f"resume={ref}: run {run_id} is FINISHED, nothing to resume")
    if is_sweep_parent(run):
        raise UserError(_sweep_not_resumed(client, ref, run))
    started_by = run.data.tags.get(C.TAG_TASK)
    if started_by != task:
        raise UserError(f"resume={ref}: run {run_id} was started by pipeline.{started_by}; "
                        f"resume it with {C.resume_command(started_by, run_id)}")
    return run


def _sweep_not_resumed(client: Any, ref: str, parent: Run) -> str:
    """Why a sweep's parent is not resumed, and what is: its unfinished jobs, each its own run."""
    from glassworks.tracking.sweep import child_runs  # the sweep's machinery: only on this error path

    unfinished = sorted((r for r in child_runs(client, [parent.info.experiment_id], parent.info.run_id)
                         if r.info.status != "FINISHED"), key=lambda r: r.info.start_time)
    jobs = ", ".join(f"python -m pipeline.run resume={r.info.run_id[:8]}" for r in unfinished[:5])
    jobs += f" (and {len(unfinished) - 5} more)" if len(unfinished) > 5 else ""
    again = parent.data.tags.get(C.TAG_COMMAND)
    return (f"resume={ref}: run {parent.info.run_id} is the parent run of sweep {parent.info.run_name} "
            f"({parent.info.status}); a sweep is not resumed, its jobs are"
            + (f": {jobs}" if jobs else " (none is unfinished)")
            + (f"; or run the sweep again: {again}" if again else ""))


def is_derived(run: Run) -> bool:
    """Later work on a run (``pipeline.explain|robustness run_id=...``), see :mod:`glassworks.tracking.derived`."""
    return C.TAG_DERIVED_FROM in run.data.tags


def rerun_command(run: Run) -> str:
    """How to make a derived run again: the same stage and overrides on the same parent (a
    killed or failed one is made again, never resumed into its parent)."""
    tags = run.data.tags
    overrides = tags.get(C.TAG_OVERRIDES, "")
    parts = [f"python -m pipeline.{tags.get(C.TAG_DERIVED_STAGE, '?')}", f"run_id={tags.get(C.TAG_DERIVED_FROM, '?')}"]
    parts += [o for o in overrides.split() if o != "(none)" and not o.startswith("run_id=")]
    return " ".join(parts)


def stages_done(run: Run) -> set[str]:
    return {s for s in run.data.tags.get(C.TAG_STAGES_DONE, "").split(",") if s}


def mark_done(tracker: Any, stage: str, done: set[str]) -> None:
    done.add(stage)
    tracker.set_tags({C.TAG_STAGES_DONE: ",".join(sorted(done))})


def run_metrics(tracker: Any) -> dict[str, float]:
    """The latest value of every metric of the current run (a stage done before a resume)."""
    return dict(tracker.client.get_run(tracker.run_id).data.metrics)


def find_reproduction(tracker: Any, experiment_name: str, original_id: str) -> str | None:
    """The newest run tagged as a reproduction of ``original_id``."""
    experiment = tracker.client.get_experiment_by_name(experiment_name)
    found = tracker.client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{C.TAG_REPRODUCES}` = '{original_id}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    ) if experiment is not None else []
    return found[0].info.run_id if found else None
