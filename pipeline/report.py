"""Report stage: python -m pipeline.report run_id=<id>   |   python -m pipeline.report sweep_id=<parent id>

Builds ONE self-contained HTML file and the same content as Markdown from what MLflow holds
(params, tags, metric history, artifacts), writes them to ``reports/<run name>-<id8>/`` and logs
them to the run as ``report/`` (:mod:`glassworks.stages.report`). ``pipeline.run`` runs the same
library stage last. This entry point supplies what MLflow does not store as such: the default
config (composed with Hydra, for the "differences from the defaults" table) and the run's data
rebuilt from its logged config (for the task's test predictions). The report of a derived run
(``pipeline.explain|robustness run_id=...`` made it) shows its own stage results with its
trained root run's context; a run's report lists the runs derived from it.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig, open_dict

from glassworks.scratch import scratch_session
from glassworks.report.output import WrittenReport
from glassworks.stages import report as report_stage
from glassworks.tasks.classify import ClassifyTask
from glassworks.tracking import contract as C
from glassworks.tracking.derived import derived_line
from glassworks.tracking.runs import existing_run, is_sweep_parent
from pipeline import imports_done
from pipeline.defaults import default_config
from pipeline.plans import report_settings, sweep_report_settings
from pipeline.stage import UserError, build_job, clean_errors, finished_run, run_datamodule, run_task

log = logging.getLogger("glassworks.report")


def report(cfg: DictConfig, tracker: Any, run_id: str | None = None, datamodule: Any = None,
           task: Any = None) -> WrittenReport | None:
    """Build, write and log the report of ``run_id`` (default: the tracker's run)."""
    if not tracker.enabled:
        log.info("report: logger=none, nothing to report from")
        return None
    run_id = run_id or tracker.run_id
    # A derived run is reported with its trained root's context: the model, task and data are the root's.
    model_run_id = derived_line(tracker.client, tracker.client.get_run(run_id)).root_id
    return report_stage.report(tracker, run_id, task or _task(tracker, model_run_id), report_settings(cfg),
                               lambda: run_datamodule(tracker, datamodule, model_run_id), default_config)


def sweep_report(cfg: DictConfig, tracker: Any, sweep_id: str) -> WrittenReport:
    """The sweep report of parent run ``sweep_id``, written and logged to the parent."""
    return report_stage.sweep_report(tracker, sweep_id, sweep_report_settings(cfg))


def _task(tracker: Any, run_id: str) -> Any:
    try:
        return run_task(tracker, run_id)
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - no config artifact: the report says so itself
        log.warning("report: the run's task could not be read from its config (%s); reporting it "
                    "as a classifier", error)
        return ClassifyTask()


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
def main(cfg: DictConfig) -> None:
    imports_done()  # a sweep worker (joblib, submitit) starts its job here
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        if bool(cfg.run_id) == bool(cfg.sweep_id):
            raise UserError("give exactly one of run_id=<run id> or sweep_id=<sweep parent run id>")
        tracker = build_job(cfg, with_data=False).tracker
        if not tracker.enabled:
            raise UserError("pipeline.report reads runs from MLflow: logger=none has no runs")
        target = str(cfg.run_id or cfg.sweep_id)
        sweep_running = False
        run = existing_run(tracker, "run_id" if cfg.run_id else "sweep_id", target)
        if cfg.run_id and is_sweep_parent(run):
            log.info("run %s is a sweep's parent run: its report is the sweep report (sweep_id=%s)", target[:8], target[:8])
            with open_dict(cfg):
                cfg.run_id, cfg.sweep_id = None, target
        if cfg.run_id:
            finished_run(tracker, target)  # a run's report is a record of what it achieved
        else:
            parent = run
            task = parent.data.tags.get(C.TAG_TASK)
            if not is_sweep_parent(parent) and task and not task.endswith("-sweep"):
                raise UserError(f"sweep_id={target}: run {target[:8]} is a pipeline.{task} run, not a sweep's "
                                f"parent; its report: python -m pipeline.report run_id={target[:8]}")
            # A sweep parent ends FAILED when one job failed: its report is still the summary.
            sweep_running = parent.info.status == "RUNNING"
            if sweep_running:
                log.warning("sweep %s is still RUNNING: the report shows the jobs so far", target)
        # Read the run without reopening it: a report is a view, it does not change the run's status.
        tracker.run_id = target
        # A run is never rewritten: the report it holds stays, and a running sweep's report (the
        # jobs so far) is not logged, or it would be the one the finished sweep keeps.
        not_logged = None
        if cfg.report.log_to_run:
            if tracker.client.list_artifacts(target, C.REPORT_DIR):
                not_logged = f"run {target} keeps the {C.REPORT_DIR}/ it holds (a run is never rewritten)"
            elif sweep_running:
                not_logged = f"sweep {target} is still RUNNING; report it again once it ends"
        if not_logged:
            log.info("report written to disk only: %s", not_logged)
            with open_dict(cfg):
                cfg.report.log_to_run = False
        written = report(cfg, tracker, target) if cfg.run_id else sweep_report(cfg, tracker, target)
        where = (f"logged to run {target} as {C.REPORT_DIR}/\n" if cfg.report.log_to_run else
                 f"not logged: {not_logged}\n" if not_logged else "")
        print(f"\nreport:   {written.html}\nmarkdown: {written.markdown}\n" + where)


if __name__ == "__main__":
    imports_done()
    main()
