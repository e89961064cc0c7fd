"""Derived runs: a finished run is never rewritten; later work on it is a nested child run.

``pipeline.explain run_id=X`` and ``pipeline.robustness run_id=X`` resolve X with
:func:`derived_source` (X must be FINISHED; when X is itself derived, the model, data and
training config come from its root), open a child of X with :func:`open_derived_run` (tags
``mlflow.parentRunId`` and ``glassworks.derived_from`` = X, ``glassworks.derived_stage``,
``glassworks.derived_root``; params: only the settings that differ from X's) and log the stage
into the child. X's params, metrics, artifacts, tags, status and end time stay as they were.
The tag keys and artifact paths are in :mod:`glassworks.tracking.contract`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import Run

from glassworks.tracking import contract as C
from glassworks.tracking.metadata import command_line, environment, git_state, redact
from glassworks.tracking.params import flatten
from glassworks.tracking.runs import finished_run, is_derived, rerun_command  # noqa: F401 - derived runs' API
from glassworks.validation import UserError

log = logging.getLogger("glassworks")
# the entry points that make derived runs, and the artifact folder each one's results live in
DERIVED_STAGES = {"explain": C.EXPLANATIONS_DIR, "robustness": C.ROBUSTNESS_DIR}


@dataclass
class DerivedSource:
    """The run a derived run is made from (``run``) and the trained run at the root of its line
    (``root``: ``run`` itself unless ``run`` is derived)."""

    run: Run
    root: Run
    line: list[Run] = field(default_factory=list)  # ``run`` and its derived ancestors below the root, nearest first

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def root_id(self) -> str:
        return self.root.info.run_id

    def effective_params(self) -> dict[str, str]:
        """The settings ``run`` ran with: its root's params, overlaid by the differing settings
        of every derived run on the way down to ``run``."""
        return {**dict(self.root.data.params), **_line_params(self)}

    def holder_of(self, folder: str) -> str:
        """The run in the line root -> ``run`` whose ``folder`` (``explanations``, ...) is the one
        that ``run`` stands for: the nearest derived run of the stage that writes it, else the root."""
        stage = next((s for s, f in DERIVED_STAGES.items() if f == folder), None)
        for run in self.line:
            if run.data.tags.get(C.TAG_DERIVED_STAGE) == stage:
                return run.info.run_id
        return self.root_id


def _line_params(source: DerivedSource) -> dict[str, str]:
    params: dict[str, str] = {}
    for run in reversed(source.line):  # the root's nearest child first, ``run`` last
        params.update(run.data.params)
    return params


def derived_line(client: Any, run: Run) -> DerivedSource:
    """``run`` and its line of derived ancestors up to the trained root run (read-only)."""
    line, current = [], run
    while is_derived(current):
        line.append(current)
        parent_id = current.data.tags[C.TAG_DERIVED_FROM]
        try:
            current = client.get_run(parent_id)
        except Exception as error:  # noqa: BLE001 - MlflowException: the parent was deleted
            raise UserError(f"run {run.info.run_id} was derived from run {parent_id}, which is not in the store "
                            f"any more ({type(error).__name__})") from error
    return DerivedSource(run=run, root=current, line=line)


def derived_source(tracker: Any, run_id: str) -> DerivedSource:
    """The FINISHED run ``run_id`` (what later work starts from) and its line up to the root."""
    run = finished_run(tracker, run_id)  # first: it also refuses logger=none, which has no client
    return derived_line(tracker.client, run)


def consistent_holders(source: DerivedSource) -> dict[str, str | None]:
    """Which run's results ``source.run`` stands for, per artifact folder of a derived stage
    (``explanations``, ``robustness``): the nearest run of the line that made them. Robustness
    results made from other explanations than the ones shown are left out (None): a report must
    not mix exact-SHAP explanations with a probe of the partition ones."""
    position = {r.info.run_id: i for i, r in enumerate([*source.line, source.root])}
    holders: dict[str, str | None] = {folder: source.holder_of(folder) for folder in DERIVED_STAGES.values()}
    explained, probed = holders[C.EXPLANATIONS_DIR], holders[C.ROBUSTNESS_DIR]
    if explained is not None and probed is not None and position[probed] > position[explained]:
        holders[C.ROBUSTNESS_DIR] = None
    return holders


def differing_settings(settings: Mapping[str, Any], parent_params: Mapping[str, str]) -> dict[str, str]:
    """The stage settings (a config section, e.g. ``{"explain": {...}}``) flattened to params,
    keeping only those that differ from the parent's (a setting the parent never had counts)."""
    flat = flatten(settings)
    return {k: v for k, v in flat.items() if parent_params.get(k) != v}


def _next_name(tracker: Any, source: DerivedSource, stage: str) -> str:
    """``<parent name>-<stage>-<n>``: the n-th run of this stage derived from the parent."""
    siblings = tracker.client.search_runs(
        [source.run.info.experiment_id],
        filter_string=f"tags.`{C.TAG_DERIVED_FROM}` = '{source.run_id}' and tags.`{C.TAG_DERIVED_STAGE}` = '{stage}'",
        max_results=10_000)
    return f"{source.run.info.run_name or source.run_id[:8]}-{stage}-{len(siblings) + 1}"


def open_derived_run(tracker: Any, source: DerivedSource, stage: str, settings: Mapping[str, Any],
                     overrides: list[str], config_yaml: str, repo_dir: Any) -> str:
    """Create the child run of ``source.run`` for ``stage`` and log what is known before it runs:
    tags, the settings that differ from the parent's as params, the command's config. Only
    the child is written; the parent is not touched."""
    if stage not in DERIVED_STAGES:
        raise ValueError(f"unknown derived stage {stage!r}; expected one of {sorted(DERIVED_STAGES)}")
    tags = {
        C.TAG_PARENT_RUN: source.run_id,
        C.TAG_DERIVED_FROM: source.run_id,
        C.TAG_DERIVED_ROOT: source.root_id,
        C.TAG_DERIVED_STAGE: stage,
        C.TAG_TASK: stage,
        C.TAG_SOURCE_NAME: f"pipeline.{stage}",
        C.TAG_SOURCE_TYPE: "LOCAL",
        C.TAG_COMMAND: command_line(),
        C.TAG_OVERRIDES: " ".join(overrides) or "(none)",
        **git_state(repo_dir),
        **{f"{C.TAG_ENV_PREFIX}{k}": v for k, v in environment().items()},
    }
    for key in (C.TAG_DATA_NAME, C.TAG_DATA_DIGEST, C.TAG_SEED):  # what the model was trained on
        if key in source.root.data.tags:
            tags[key] = source.root.data.tags[key]
    changed = differing_settings(settings, source.effective_params())
    run_id = tracker.start(_next_name(tracker, source, stage), tags, experiment_id=source.run.info.experiment_id)
    tracker.log_params(changed)
    tracker.log_text(config_yaml, C.STAGE_CONFIG)
    log.info("derived %s run %s of run %s (settings changed: %s)", stage, run_id, source.run_id,
             ", ".join(f"{k}={v}" for k, v in changed.items()) or "none")
    return run_id


def derived_runs(client: Any, run: Run) -> list[Run]:
    """The runs derived from ``run``, oldest first: every run of its line when ``run`` is a
    trained (root) run, its direct children when ``run`` is derived itself."""
    key = C.TAG_DERIVED_FROM if is_derived(run) else C.TAG_DERIVED_ROOT
    return client.search_runs([run.info.experiment_id], filter_string=f"tags.`{key}` = '{run.info.run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=10_000)
