"""Reproduce a run: python -m pipeline.reproduce run_id=<id> [reproduce.atol=1e-6 reproduce.rtol=0]

Re-runs the original task (``pipeline.run`` or ``pipeline.train``) from the run's logged
``config/config.yaml`` as a NEW run tagged ``glassworks.reproduces=<id>``, then compares every
final metric of the two runs (timings, throughput and system metrics excluded, see
``reproduce.exclude``), prints the comparison, and exits 1 when any metric differs beyond
``reproduce.atol + reproduce.rtol * |original|`` (2 for bad input, as every stage).

The logged config is the resolved one, so it replays what ran, even where defaults have changed
since; only locations (output folders, the tracking store) are this invocation's own.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from glassworks.report.compare import ComparisonResult, compare_metrics
from glassworks.tracking.metadata import git_state
from glassworks.scratch import scratch_session
from pipeline.stage import REPO_DIR, UserError, build_job, clean_errors, finished_run

log = logging.getLogger("glassworks.reproduce")
STAGES = {"run": "pipeline.run", "train": "pipeline.train"}
REPRODUCES_TAG = "glassworks.reproduces"


def warn_code_state(original: Any) -> list[str]:
    """Warnings when the code that runs now may not be the code that ran then."""
    tags, now = original.data.tags, git_state(REPO_DIR)
    warnings = []
    then_commit = tags.get("mlflow.source.git.commit")
    if then_commit and now.get("mlflow.source.git.commit") and then_commit != now["mlflow.source.git.commit"]:
        warnings.append(f"the run was made at commit {then_commit[:12]}, this checkout is at "
                        f"{now['mlflow.source.git.commit'][:12]} (git checkout {then_commit})")
    if tags.get("glassworks.git_dirty") == "true":
        warnings.append("the run was made from a dirty tree: its uncommitted changes are not in git")
    if now.get("glassworks.git_dirty") == "true":
        warnings.append("this checkout has uncommitted changes")
    for warning in warnings:
        log.warning("reproduce: %s", warning)
    return warnings


def _rebase(node: Any, moves: list[tuple[str, str]]) -> Any:
    """Replace old location prefixes in every string of a plain config tree."""
    if isinstance(node, dict):
        return {k: _rebase(v, moves) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebase(v, moves) for v in node]
    if isinstance(node, str):
        for old, new in moves:
            if node == old or node.startswith(old.rstrip("/") + "/"):
                return new + node[len(old):]
    return node


def reproduction_config(cfg: DictConfig, tracker: Any, original: Any) -> DictConfig:
    """The run's logged config with this invocation's locations, the reproduction tag, overrides."""
    try:
        logged = OmegaConf.to_container(OmegaConf.load(tracker.download("config/config.yaml")), resolve=False)
    except Exception as error:  # noqa: BLE001 - no artifact / unreadable YAML
        raise UserError(f"run_id={original.info.run_id}: no readable config/config.yaml artifact") from error
    task = logged.get("task_name")
    if task not in STAGES:
        raise UserError(f"run_id={original.info.run_id}: task {task!r} cannot be re-run; "
                        f"reproducible tasks are {sorted(STAGES)}")
    # Locations are this invocation's: the new run must not write into the original's folders.
    old_paths, new_paths = logged.get("paths") or {}, OmegaConf.to_container(cfg.paths, resolve=True)
    moves = sorted(((str(old_paths[k]), str(new_paths[k])) for k in new_paths
                    if k in old_paths and old_paths[k] and Path(str(old_paths[k])).is_absolute()),
                   key=lambda m: -len(m[0]))
    logged = _rebase(logged, moves)
    logged["paths"] = new_paths
    # The new run goes to the store this command reads from (the original's store).
    logged.setdefault("logger", {}).update({k: cfg.logger.get(k) for k in ("store_dir", "tracking_uri")})
    logged["run_name"] = f"{original.info.run_name or original.info.run_id}-reproduction"
    logged["tags"] = {**(logged.get("tags") or {}), REPRODUCES_TAG: original.info.run_id}
    run_cfg = OmegaConf.create(logged)
    extra = list(cfg.reproduce.overrides or [])
    if extra:
        try:
            run_cfg = OmegaConf.merge(run_cfg, OmegaConf.from_dotlist(extra))
        except Exception as error:  # noqa: BLE001 - a malformed dotlist
            raise UserError(f"invalid config reproduce.overrides: {error}") from error
        log.warning("reproduce: applying overrides %s: the reproduction will differ by design", extra)
    return run_cfg


def match_threads(original: Any) -> None:
    threads = original.data.tags.get("glassworks.env.torch.threads")
    if threads and threads.isdigit() and int(threads) != torch.get_num_threads():
        log.info("reproduce: using %s torch threads like the original run (was %d)", threads, torch.get_num_threads())
        torch.set_num_threads(int(threads))


def rerun(run_cfg: DictConfig, tracker: Any, original_id: str) -> str:
    """Run the original's stage in-process on ``run_cfg``; the id of the run it created."""
    stage = importlib.import_module(STAGES[run_cfg.task_name])
    # A @hydra.main function called with a config runs its body on it (Hydra's passthrough):
    # the exact code path of `python -m pipeline.<task>`, without re-composing anything.
    stage.main(run_cfg)
    experiment = tracker.client.get_experiment_by_name(run_cfg.logger.experiment_name)
    found = tracker.client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{REPRODUCES_TAG}` = '{original_id}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    ) if experiment is not None else []
    if not found:
        raise UserError(f"the reproduction of {original_id} created no run")
    return found[0].info.run_id


def print_comparison(console: Console, result: ComparisonResult, original: Any, reproduction: Any,
                     rtol: float, atol: float) -> None:
    table = Table(title=f"run {original.info.run_id}  vs  reproduction {reproduction.info.run_id}",
                  title_justify="left")
    for name, justify in (("metric", "left"), ("original", "right"), ("reproduction", "right"),
                          ("|difference|", "right"), ("", "left")):
        table.add_column(name, justify=justify, no_wrap=name == "metric")
    for row in result.rows:
        style = {"same": "green", "close": "yellow"}.get(row.status, "bold red")
        table.add_row(row.key, _num(row.original), _num(row.reproduced), _num(row.abs_diff),
                      f"[{style}]{row.status}[/]")
    console.print(table)
    console.print(f"tolerance: |difference| <= atol + rtol * |original| with atol={atol:g}, rtol={rtol:g}",
                  highlight=False)
    console.print(f"not compared ({len(result.excluded)} timing / throughput / system metrics): "
                  + (", ".join(result.excluded) or "none"), highlight=False)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.10g}"


@hydra.main(version_base="1.3", config_path="../conf", config_name="reproduce")
def main(cfg: DictConfig) -> None:
    console = Console(width=None if sys.stdout.isatty() else 160, soft_wrap=False)
    rcfg = cfg.reproduce
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        tracker = build_job(cfg, with_data=False).tracker
        original = finished_run(tracker, cfg.run_id)
        tracker.run_id = cfg.run_id  # read-only use (download); the original run is never reopened
        if rcfg.against:
            reproduction = finished_run(tracker, rcfg.against)
        else:
            warn_code_state(original)
            run_cfg = reproduction_config(cfg, tracker, original)
            if rcfg.match_threads:
                match_threads(original)
            new_id = rerun(run_cfg, tracker, cfg.run_id)
            reproduction = finished_run(tracker, new_id)
        result = compare_metrics(original.data.metrics, reproduction.data.metrics, rtol=float(rcfg.rtol),
                                 atol=float(rcfg.atol), exclude=list(rcfg.exclude))
        print_comparison(console, result, original, reproduction, float(rcfg.rtol), float(rcfg.atol))
        digests = [r.data.tags.get("glassworks.data.digest") for r in (original, reproduction)]
        same_data = digests[0] == digests[1]
        if not same_data:
            console.print(f"[bold red]data digest differs:[/] {digests[0]} vs {digests[1]}", highlight=False)
    if result.ok and same_data:
        console.print(f"[green]reproduced:[/] all {len(result.rows)} compared metrics agree", highlight=False)
        return
    console.print(f"[bold red]NOT reproduced:[/] {result.n_differ} of {len(result.rows)} metrics differ"
                  + ("" if same_data else ", and the data differs"), highlight=False)
    sys.exit(1)


if __name__ == "__main__":
    main()
