"""The report stage: ONE self-contained HTML file and the same content as Markdown, built from
what MLflow holds for a run or a sweep, written to ``<out_dir>/<run name>-<id8>/`` and logged
to the run as ``report/``.

Two inputs MLflow does not store as such come from the caller: the entry point's default config
(for the "differences from the defaults" table) and the run's data, rebuilt from its logged
config (for the task's test predictions, e.g. the confusion matrix).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from glassworks.report.collect import RunRecord, load_run, sweep_children
from glassworks.report.output import WrittenReport, report_dir_name, write_report
from glassworks.report.run_report import DefaultConfig, RunReportOptions, TestPredictions, build_run_report
from glassworks.report.sweep_report import Child, SweepObjective, build_sweep_report
from glassworks.stages.settings import ReportSettings, SweepReportSettings
from glassworks.tasks.base import Task
from glassworks.tracking import contract as C
from glassworks.tracking.logged_model import has_run_model, run_model_uri
from glassworks.tracking.tracker import metric_name, run_ui_url
from glassworks.validation import UserError

log = logging.getLogger("glassworks.report")


def test_predictions(task: Task, tracker: Any, record: RunRecord,
                     load_datamodule: Callable[[], Any]) -> tuple[TestPredictions | None, str | None]:
    """The run's logged model on its test split; (None, reason) when either cannot be rebuilt."""
    if not has_run_model(tracker.uri, record.model_run_id):
        return None, f"the run has no logged model {run_model_uri(record.model_run_id)} (logger.log_model=false?)"
    try:
        loaded = task.load_model(record.model_run_id, tracker.uri)
        datamodule = load_datamodule()
    except (UserError, OSError) as error:
        return None, f"the test split could not be rebuilt from the run's config ({error})"
    y_true, y_pred = task.test_predictions(loaded, datamodule)
    logged = record.tags.get(C.TAG_DATA_DIGEST)
    source = (f"Predicted for this report by the run's logged model ({run_model_uri(record.model_run_id)}) on the test split rebuilt from "
              f"{C.CONFIG}.")
    if logged and logged != datamodule.digest:
        source += f" WARNING: the rebuilt data's digest {datamodule.digest[:12]} differs from the run's {logged[:12]}."
    return TestPredictions(y_true, y_pred, source), None


def report(tracker: Any, run_id: str, task: Task, settings: ReportSettings,
           load_datamodule: Callable[[], Any],
           default_config: Callable[[str, list[str]], DefaultConfig | None]) -> WrittenReport:
    """Build, write and log the report of ``run_id``; ``default_config(task name, the run's
    command-line overrides)`` is what its config is compared with."""
    record = load_run(tracker.client, run_id)
    for derived in record.derived_runs:
        derived.url = run_ui_url(tracker.uri, derived.experiment_id, derived.run_id)
    try:
        predictions, error = (test_predictions(task, tracker, record, load_datamodule) if settings.confusion_matrix
                              else (None, "disabled (report.confusion_matrix=false)"))
        doc = build_run_report(record, default_config(record.task, record.overrides()), predictions, error,
                               RunReportOptions(n_examples=settings.n_examples, top_tokens=settings.top_tokens),
                               task_sections=task.report_sections)
        written = write_report(doc, settings.out_dir, report_dir_name(record.name, record.run_id))
    finally:
        record.artifacts.close()
    if settings.log_to_run:
        tracker.client.log_artifacts(record.run_id, str(written.folder), C.REPORT_DIR)
    log.info("report written to %s", written.html)
    return written


def sweep_report(tracker: Any, sweep_id: str, settings: SweepReportSettings,
                 ending_status: str | None = None) -> WrittenReport:
    """The sweep report of parent run ``sweep_id``, written and logged to the parent. The sweep
    itself reports as its last step, with the ``ending_status`` its parent is about to end with."""
    client = tracker.client
    parent = load_run(client, sweep_id)
    parent.status = ending_status or parent.status
    try:
        children = [Child.from_run(r) for r in sweep_children(client, sweep_id, settings.max_children)]
        # The sweep may name its own objective on the parent; the settings are the fallback.
        objective = SweepObjective(
            metric_name(parent.tags.get(C.TAG_SWEEP_OPTIMIZED_METRIC, settings.metric)),
            parent.tags.get(C.TAG_SWEEP_MODE, settings.mode))
        doc = build_sweep_report(parent, children, objective, settings.accuracy_metric, settings.quality_metric)
        written = write_report(doc, settings.out_dir, report_dir_name(parent.name, parent.run_id))
    finally:
        parent.artifacts.close()
    if settings.log_to_run:
        client.log_artifacts(sweep_id, str(written.folder), C.REPORT_DIR)
    log.info("sweep report (%d children) written to %s", len(children), written.html)
    return written
