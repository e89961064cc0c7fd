"""Reproduce a run: python -m pipeline.reproduce run_id=<id> [reproduce.atol=1e-6 reproduce.rtol=0]

Re-runs the original task (``pipeline.run`` or ``pipeline.train``) from the run's logged
``config/config.yaml`` as a NEW run tagged ``glassworks.reproduces=<id>``, then compares every
final metric of the two runs (never the machine's: timings, throughput and system metrics,
``contract.MACHINE_METRICS``; nor those matching ``reproduce.exclude``), prints the comparison, and exits 1 when any metric differs beyond
``reproduce.atol + reproduce.rtol * |original|`` (2 for bad input, as every stage). The table
lists the differing metrics (``reproduce.show=all``: every metric, the differing ones first).

It compares exactly what the original recorded: a finished run is never rewritten (later
``pipeline.explain|robustness`` work on it lives in derived child runs, which are not part of
what ``pipeline.run`` did and are named, not compared).

The logged config is the resolved one, so it replays what ran, even where defaults have changed
since; only locations (output folders, the tracking store) are this invocation's own.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections import Counter
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from glassworks.scratch import scratch_session
from glassworks.render import fmt
from glassworks.report.compare import ComparisonResult, compare_metrics
from glassworks.tracking import contract as C
from glassworks.tracking.derived import derived_runs, is_derived, rerun_command
from glassworks.tracking.reproduction import REPRODUCIBLE, code_state_warnings, logged_threads, rebase_locations
from glassworks.tracking.runs import find_reproduction
from pipeline import imports_done
from pipeline.stage import REPO_DIR, UserError, build_job, clean_errors, finished_run

log = logging.getLogger("glassworks.reproduce")


def reproduction_config(cfg: DictConfig, tracker: Any, original: Any) -> DictConfig:
    """The run's logged config with this invocation's locations, the reproduction tag, overrides."""
    try:
        logged = OmegaConf.to_container(OmegaConf.load(tracker.download(C.CONFIG)), resolve=False)
    except Exception as error:  # noqa: BLE001 - no artifact / unreadable YAML
        raise UserError(f"run_id={original.info.run_id}: no readable {C.CONFIG} artifact") from error
    task = logged.get("task_name")
    if task not in REPRODUCIBLE:
        raise UserError(f"run_id={original.info.run_id}: task {task!r} cannot be re-run; "
                        f"reproducible tasks are {sorted(REPRODUCIBLE)}")
    # Locations are this invocation's: the new run must not write into the original's folders.
    logged = rebase_locations(logged, OmegaConf.to_container(cfg.paths, resolve=True))
    # The new run goes to the store this command reads from (the original's store).
    logged.setdefault("logger", {}).update({k: cfg.logger.get(k) for k in ("store_dir", "tracking_uri")})
    logged["run_name"] = f"{original.info.run_name or original.info.run_id}-reproduction"
    logged["tags"] = {**(logged.get("tags") or {}), C.TAG_REPRODUCES: original.info.run_id}
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
    threads = logged_threads(original.data.tags)
    if threads is not None and threads != torch.get_num_threads():
        log.info("reproduce: using %s torch threads like the original run (was %d)", threads, torch.get_num_threads())
        torch.set_num_threads(threads)


def rerun(run_cfg: DictConfig, tracker: Any, original_id: str) -> str:
    """Run the original's stage in-process on ``run_cfg``; the id of the run it created."""
    stage = importlib.import_module(REPRODUCIBLE[run_cfg.task_name])
    # A @hydra.main function called with a config runs its body on it (Hydra's passthrough):
    # the exact code path of `python -m pipeline.<task>`, without re-composing anything.
    stage.main(run_cfg)
    found = find_reproduction(tracker, run_cfg.logger.experiment_name, original_id)
    if found is None:
        raise UserError(f"the reproduction of {original_id} created no run")
    return found


SHOW = ("differing", "all")


def print_comparison(console: Console, result: ComparisonResult, original: Any, reproduction: Any,
                     rtol: float, atol: float, show: str = "differing") -> None:
    """The comparison table: the differing rows first (only those unless ``show == "all"``)."""
    rows = sorted(result.rows, key=lambda r: r.ok)  # stable: differing rows first, each part by key
    if show != "all":
        rows = [r for r in rows if not r.ok]
    title = f"run {original.info.run_id}  vs  reproduction {reproduction.info.run_id}"
    if rows:
        table = Table(title=title, title_justify="left")
        for name, justify in (("metric", "left"), ("original", "right"), ("reproduction", "right"),
                              ("|difference|", "right"), ("", "left")):
            table.add_column(name, justify=justify, no_wrap=name == "metric")
        for row in rows:
            style = {"same": "green", "close": "yellow"}.get(row.status, "bold red")
            table.add_row(row.key, _num(row.original), _num(row.reproduced), _num(row.abs_diff),
                          f"[{style}]{row.status}[/]")
        console.print(table)
    else:
        console.print(title, highlight=False)
    if show != "all":
        console.print(f"{len(result.rows) - len(rows)} agreeing metrics not listed (all rows: reproduce.show=all)",
                      highlight=False)
    console.print(f"tolerance: |difference| <= atol + rtol * |original| with atol={atol:g}, rtol={rtol:g}",
                  highlight=False)
    console.print(f"not compared ({len(result.excluded)}: timing / throughput / system metrics, reproduce.exclude): "
                  + (", ".join(result.excluded) or "none"), highlight=False)


def print_derived(console: Console, client: Any, original: Any) -> None:
    """Say when later work was done on the original: its derived runs are not compared."""
    derived = derived_runs(client, original)
    if not derived:
        return
    stages = Counter(r.data.tags.get(C.TAG_DERIVED_STAGE, "?") for r in derived)
    console.print(f"note: run {original.info.run_id} has {len(derived)} derived run{'s' if len(derived) > 1 else ''} ("
                  + ", ".join(f"{stage} x{n}" for stage, n in sorted(stages.items()))
                  + "): later work on it, not compared; the original's own metrics are as it recorded them "
                  + "(see them with python -m pipeline.report run_id=" + original.info.run_id + ")", highlight=False)


def _num(value: float | None) -> str:
    return fmt(value, digits=10)  # the one number format, precise enough to see a reproduction differ


@hydra.main(version_base="1.3", config_path="../conf", config_name="reproduce")
def main(cfg: DictConfig) -> None:
    imports_done()  # a sweep worker (joblib, submitit) starts its job here
    console = Console(width=None if sys.stdout.isatty() else 160, soft_wrap=False)
    rcfg = cfg.reproduce
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        show = str(rcfg.get("show", "differing"))
        if show not in SHOW:  # checked before anything re-runs
            raise UserError(f"invalid config reproduce.show: {show!r}; expected one of {list(SHOW)}")
        tracker = build_job(cfg, with_data=False).tracker
        original = finished_run(tracker, cfg.run_id)
        if is_derived(original):
            raise UserError(f"run_id={cfg.run_id}: a derived {original.data.tags.get(C.TAG_DERIVED_STAGE)} run of run "
                            f"{original.data.tags.get(C.TAG_DERIVED_FROM)}; reproduce that run, or make this one again "
                            f"with: {rerun_command(original)}")
        tracker.run_id = cfg.run_id  # read-only use (download); the original run is never reopened
        if rcfg.against:
            reproduction = finished_run(tracker, rcfg.against)
        else:
            code_state_warnings(original.data.tags, REPO_DIR)
            run_cfg = reproduction_config(cfg, tracker, original)
            if rcfg.match_threads:
                match_threads(original)
            new_id = rerun(run_cfg, tracker, cfg.run_id)
            reproduction = finished_run(tracker, new_id)
        result = compare_metrics(original.data.metrics, reproduction.data.metrics, rtol=float(rcfg.rtol),
                                 atol=float(rcfg.atol), exclude=list(rcfg.exclude))
        print_comparison(console, result, original, reproduction, float(rcfg.rtol), float(rcfg.atol), show)
        print_derived(console, tracker.client, original)
        digests = [r.data.tags.get(C.TAG_DATA_DIGEST) for r in (original, reproduction)]
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
    imports_done()
    main()
