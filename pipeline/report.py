"""Report stage: python -m pipeline.report run_id=<id>   |   python -m pipeline.report sweep_id=<parent id>

Builds ONE self-contained HTML file and the same content as Markdown from what MLflow holds
(params, tags, metric history, artifacts), writes them to ``reports/<run name>-<id8>/`` and logs
them to the run as ``report/``. ``pipeline.run`` calls :func:`report` as its last stage.

The entry point supplies the two things MLflow does not store as such: the task's default config
(composed here with Hydra, for the "differences from the defaults" table) and the test-split
predictions behind the confusion matrix (the run's logged model on the test split rebuilt from
the run's logged config, exactly as ``pipeline.explain`` rebuilds it).
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from glassworks.data.errors import DataError
from glassworks.report.collect import RunRecord, load_run, sweep_children
from glassworks.report.config_diff import flatten_values
from glassworks.report.output import WrittenReport, report_dir_name, write_report
from glassworks.report.run_report import DefaultConfig, RunReportOptions, TestPredictions, build_run_report
from glassworks.report.sweep_report import Child, SweepObjective, build_sweep_report
from glassworks.tracking.pyfunc import load_run_model
from glassworks.tracking.tracker import metric_name
from glassworks.validation import ConfigError
from glassworks.scratch import scratch_session
from pipeline.explain import load_run_data
from pipeline.stage import REPO_DIR, UserError, build_job, clean_errors, finished_run

log = logging.getLogger("glassworks.report")
CONF_DIR = REPO_DIR / "conf"


def _compose(config_name: str) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside an @hydra.main app: same search path
        return compose(config_name=config_name)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name)


def default_config(task_name: str) -> DefaultConfig | None:
    """The task's config composed with no overrides, as plain values for the library.

    Keys whose default interpolates a location (``paths.*``, ``hydra:``) or an environment
    variable are skipped: they describe the machine, not choices of the experiment.
    """
    try:
        cfg = _compose(task_name)
    except Exception as error:  # noqa: BLE001 - no default config: the report says so instead
        log.warning("report: could not compose the default %r config: %s", task_name, error)
        return None
    raw = flatten_values(OmegaConf.to_container(cfg, resolve=False))
    values, interpolations, skip = {}, {}, set()
    for key, value in raw.items():
        if isinstance(value, str) and "${" in value:
            # Locations and the environment (MLFLOW_TRACKING_URI, ...) are not experiment choices.
            if "hydra:" in value or "paths." in value or "oc.env:" in value:
                skip.add(key)
                continue
            interpolations[key] = value
        try:
            resolved = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
        except Exception:  # noqa: BLE001 - unresolvable here (a runtime value): not compared
            skip.add(key)
            continue
        values[key] = OmegaConf.to_container(resolved, resolve=True) if OmegaConf.is_config(resolved) else resolved
    return DefaultConfig(values, interpolations, skip, name=f"conf/{task_name}.yaml")


def predict_test_split(tracker: Any, record: RunRecord, datamodule: Any = None) -> tuple[TestPredictions | None, str | None]:
    """The run's logged model on its test split; (None, reason) when either cannot be rebuilt."""
    if not record.artifacts.exists("model/MLmodel"):
        return None, "the run has no model/ artifact (logger.log_model=false?)"
    try:
        loaded = load_run_model(record.run_id, tracker.uri)
        datamodule = load_run_data(tracker, datamodule)
    except (UserError, DataError, ConfigError, OSError) as error:
        return None, f"the test split could not be rebuilt from the run's config ({error})"
    test = datamodule.split_frame("test")
    predicted = loaded.predict_proba(test["text"].tolist()).argmax(axis=1)  # (N,)
    logged = record.tags.get("glassworks.data.digest")
    source = ("Predicted for this report by the run's logged model (model/) on the test split rebuilt from "
              "config/config.yaml.")
    if logged and logged != datamodule.digest:
        source += f" WARNING: the rebuilt data's digest {datamodule.digest[:12]} differs from the run's {logged[:12]}."
    return TestPredictions(test["label"].to_numpy(), predicted, source), None


def report(cfg: DictConfig, tracker: Any, run_id: str | None = None, datamodule: Any = None) -> WrittenReport | None:
    """Build, write and log the report of ``run_id`` (default: the tracker's run)."""
    if not tracker.enabled:
        log.info("report: logger=none, nothing to report from")
        return None
    rcfg = cfg.report
    record = load_run(tracker.client, run_id or tracker.run_id)
    try:
        predictions, error = (predict_test_split(tracker, record, datamodule) if rcfg.confusion_matrix
                              else (None, "disabled (report.confusion_matrix=false)"))
        doc = build_run_report(record, default_config(record.task), predictions, error,
                               RunReportOptions(n_examples=rcfg.n_examples, top_tokens=rcfg.top_tokens))
        written = write_report(doc, rcfg.out_dir, report_dir_name(record.name, record.run_id))
    finally:
        record.artifacts.close()
    if rcfg.log_to_run:
        tracker.client.log_artifacts(record.run_id, str(written.folder), "report")
    log.info("report written to %s", written.html)
    return written


def sweep_report(cfg: DictConfig, tracker: Any, sweep_id: str) -> WrittenReport:
    """The sweep report of parent run ``sweep_id``, written and logged to the parent."""
    rcfg, client = cfg.report, tracker.client
    parent = load_run(client, sweep_id)
    try:
        children = [Child.from_run(r) for r in sweep_children(client, sweep_id, rcfg.sweep.max_children)]
        # The sweep may name its own objective on the parent; the config is the fallback.
        objective = SweepObjective(metric_name(parent.tags.get("glassworks.sweep.optimized_metric", rcfg.sweep.metric)),
                                   parent.tags.get("glassworks.sweep.mode", rcfg.sweep.mode))
        doc = build_sweep_report(parent, children, objective, rcfg.sweep.accuracy_metric, rcfg.sweep.quality_metric)
        written = write_report(doc, rcfg.out_dir, report_dir_name(parent.name, parent.run_id))
    finally:
        parent.artifacts.close()
    if rcfg.log_to_run:
        client.log_artifacts(sweep_id, str(written.folder), "report")
    log.info("sweep report (%d children) written to %s", len(children), written.html)
    return written


@hydra.main(version_base="1.3", config_path="../conf", config_name="report")
def main(cfg: DictConfig) -> None:
    with clean_errors(cfg), scratch_session():  # no glassworks-* temp folder outlives the command
        if bool(cfg.run_id) == bool(cfg.sweep_id):
            raise UserError("give exactly one of run_id=<run id> or sweep_id=<sweep parent run id>")
        tracker = build_job(cfg, with_data=False).tracker
        if not tracker.enabled:
            raise UserError("pipeline.report reads runs from MLflow: logger=none has no runs")
        target = str(cfg.run_id or cfg.sweep_id)
        if cfg.run_id:
            finished_run(tracker, target)  # a run's report is a record of what it achieved
        else:
            try:
                parent = tracker.client.get_run(target)
            except Exception as error:  # noqa: BLE001 - MlflowException or an unreachable store
                raise UserError(f"sweep_id={target}: no such run in {tracker.uri}") from error
            # A sweep parent ends FAILED when one job failed: its report is still the summary.
            if parent.info.status == "RUNNING":
                log.warning("sweep %s is still RUNNING: the report shows the jobs so far", target)
        # Read the run without reopening it: a report is a view, it does not change the run's status.
        tracker.run_id = target
        written = report(cfg, tracker, target) if cfg.run_id else sweep_report(cfg, tracker, target)
        print(f"\nreport:   {written.html}\nmarkdown: {written.markdown}\n"
              + (f"logged to run {target} as report/\n" if cfg.report.log_to_run else ""))


if __name__ == "__main__":
    main()
