"""The report of one run: what ran, where, on which data, how it learned, how it scores, how its
explanations and robustness compare with chance, how long each stage took, how to reproduce it.

Every number comes from the :class:`~glassworks.report.collect.RunRecord` (MLflow's values and
artifacts); the only inputs from elsewhere are the default config (for the diff) and the test
predictions (for the confusion matrix), both computed by the entry point from the run itself.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from glassworks.report.collect import RunRecord
from glassworks.report.classifier_sections import RunReportOptions, TestPredictions, classifier_sections
from glassworks.report.config_diff import ConfigChange, config_diff, flatten_values, show
from glassworks.report.document import (
    Code, Details, Document, Headline, Image, KeyValues, Metric, Paragraph, Section, Table, fmt,
)  # fmt: skip
from glassworks.report.figures import learning_curves_png
from glassworks.report.model_section import model_section
from glassworks.tracking import contract as C
from glassworks.tracking.metadata import shareable

ENV_KEYS = ("python", "platform", "device", "torch.threads")


@dataclass
class DefaultConfig:
    """The task's default config, composed by the entry point: flat resolved values, the raw
    interpolations of derived keys, and keys that are locations rather than settings."""

    values: dict[str, Any]
    interpolations: dict[str, str] = field(default_factory=dict)
    skip: set[str] = field(default_factory=set)
    skip_prefixes: tuple[str, ...] = ("paths.", "hydra.")
    name: str = ""


def format_time(ms: int | None) -> str:
    if not ms:
        return "–"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def _label_names(record: RunRecord) -> list[str]:
    stats = record.artifacts.json(C.DATA_STATS) if record.artifacts else None
    if stats and stats.get("label_names"):
        return [str(n) for n in stats["label_names"]]
    names = record.params.get("data.label_names")
    return names.split(",") if names else []


# --------------------------------------------------------------------------- sections
def _summary(record: RunRecord, config: Mapping[str, Any]) -> Section:
    m = record.metrics
    cards = []
    for key, label in (("test/acc", "test balanced accuracy"), ("test/f1", "test macro F1"), ("val/acc", "val balanced accuracy")):
        if key in m:
            cards.append(Metric(label, fmt(m[key]), key))
    best = _best_method(m)
    if best:
        method, value = best
        cards.append(Metric("most faithful", method, f"comprehensiveness {fmt(value)}"))
    duration = _duration(record)
    if duration is not None:
        cards.append(Metric("stage time", format_seconds(duration), f"sum of {C.stage_time_key('<stage>')}"))
    status = record.status + (" (report built as the run's last stage)" if record.status == "RUNNING" else "")
    model = config.get("model", {}) if isinstance(config.get("model"), Mapping) else {}
    model_text = ", ".join(f"{k}={v}" for k, v in model.items() if k != "_target_") or record.params.get("model._target_", "–")
    items = [
        ("run", f"{record.name} ({record.run_id})"),
        ("experiment", f"{record.experiment_name} ({record.experiment_id})"),
        ("status", status),
        ("task", f"pipeline.{record.task}"),
        ("started", format_time(record.start_ms)),
        ("data", record.tags.get(C.TAG_DATA_NAME, "–")),
        ("model", f"{str(model.get('_target_', '')).rsplit('.', 1)[-1]} {model_text}".strip()),
        ("seed", record.tags.get(C.TAG_SEED, record.params.get("seed", "–"))),
    ]
    if record.tags.get(C.TAG_REPRODUCES):
        items.append(("reproduces run", record.tags[C.TAG_REPRODUCES]))
    if record.tags.get(C.TAG_SWEEP_ID) and record.tags.get(C.TAG_PARENT_RUN):
        items.append(("sweep (parent run)", record.tags[C.TAG_PARENT_RUN]))
    derived = record.derived
    if derived is not None:
        items += [("derived from run", derived.parent_id), ("stage re-run", f"pipeline.{derived.stage}"),
                  ("settings changed", _settings_text(derived.settings)), ("command", derived.command)]
        if derived.root_id != derived.parent_id:
            items.append(("trained run", derived.root_id))
    if record.derived_runs:
        items.append(("derived runs", f"{len(record.derived_runs)} (see Derived runs)"))
    blocks: list[Any] = [Headline(cards), KeyValues(items)]
    if derived is not None:
        blocks.append(Paragraph(_derived_note(derived), "note"))
    if record.tags.get(C.TAG_ERROR):
        stage = record.tags.get(C.TAG_FAILED_STAGE, "?")
        blocks.insert(0, Paragraph(f"The run failed in stage {stage}: {record.tags[C.TAG_ERROR]} "
                                   "(traceback: artifact {C.ERROR_TRACEBACK})", "warning"))
    return Section("summary", "Summary", blocks)


def _duration(record: RunRecord) -> float | None:
    """The seconds the run's stages took, from the timings it logged (``time/<stage>_s``): never
    from its start and end times, which a later command reopening the run could move."""
    timings = [v for k, v in record.metrics.items() if _is_stage_time(k) and math.isfinite(v)]
    return sum(timings) if timings else None


def _is_stage_time(key: str) -> bool:
    return key.startswith(f"{C.TIME_PREFIX}/") and key.endswith("_s")


def _settings_text(settings: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(settings.items())) or "none (the parent's settings)"


def _derived_note(derived: Any) -> str:
    shown = {folder: run for folder, run in derived.sources.items()}
    parts = [f"{folder}/ from run {run}" if run else f"no {folder}/ (made from other explanations than the ones "
             f"shown; probe these with python -m pipeline.robustness run_id=<this run>)"
             for folder, run in shown.items()]
    return (f"A derived run: later pipeline.{derived.stage} work on run {derived.parent_id}, which it left unchanged. "
            f"The training context (config, data, model, learning curves, test results) is run {derived.root_id}'s; "
            + "; ".join(parts) + ".")


def _headline(run: Any) -> str:
    """A derived run's headline numbers: the most faithful method, the most effective attack, its time."""
    m = run.metrics
    parts = []
    best = _best_method(m)
    if best:
        parts.append(f"most faithful {best[0]} (comprehensiveness {fmt(best[1])})")
    attacks = {k.split("/")[1]: v for k, v in m.items() if k.startswith(f"{C.ROBUSTNESS_PREFIX}/")
               and k.endswith("/attack_success") and k.split("/")[1] != C.ROBUSTNESS_BASELINE and math.isfinite(v)}
    if attacks:
        method = max(attacks, key=lambda k: attacks[k])
        parts.append(f"attack success {method} {fmt(attacks[method])}")
    return "; ".join(parts) or "–"


def _derived_runs_section(record: RunRecord) -> Section | None:
    runs = record.derived_runs
    if not runs:
        return None
    rows = [[f"{r.name} ({r.run_id[:8]})", r.stage, r.status, _settings_text(r.settings),
             r.parent_id[:8] if r.parent_id != record.run_id else "this run", _headline(r),
             format_seconds(r.metrics.get(C.stage_time_key(r.stage))), r.url or r.run_id] for r in runs]
    blocks: list[Any] = [
        Paragraph("Later work on this run: a run is never rewritten, so each pipeline.explain or pipeline.robustness "
                  f"run_id=... made a child run ({C.TAG_DERIVED_FROM}) holding that stage's results. The results "
                  "above are this run's own.", "note"),
        Table(["run", "stage", "status", "settings changed", "derived from", "headline", "time", "link"], rows,
              caption=f"Derived runs ({len(runs)}, oldest first)"),
        Code("\n".join(f"python -m pipeline.report run_id={r.run_id}   # {r.stage}: {_settings_text(r.settings)}"
                       for r in runs), "bash"),
    ]
    return Section("derived", "Derived runs", blocks)


def _best_method(metrics: Mapping[str, float]) -> tuple[str, float] | None:
    scores = {k.split("/")[1]: v for k, v in metrics.items()
              if k.startswith("explain/") and k.endswith("/comprehensiveness") and k.split("/")[1] != C.EXPLAIN_BASELINE}
    scores = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not scores:
        return None
    method = max(scores, key=lambda k: scores[k])
    return method, scores[method]


def _config_section(record: RunRecord, config_text: str | None, defaults: DefaultConfig | None,
                    overrides: list[str]) -> tuple[Section, list[ConfigChange]]:
    blocks: list[Any] = [KeyValues([("task", f"pipeline.{record.task}"),
                                    ("command line", shareable(record.tags.get(C.TAG_COMMAND, "–")))])]
    blocks.append(Paragraph("Overrides given on the command line:" if overrides else
                            "No overrides: the run used the default config."))
    if overrides:
        blocks.append(Code("\n".join(overrides)))
    changes: list[ConfigChange] = []
    config = yaml.safe_load(config_text) if config_text else None
    if config is None:
        blocks.append(Paragraph(f"The run has no {C.CONFIG} artifact.", "warning"))
    elif defaults is None:
        blocks.append(Paragraph("The default config could not be composed; no comparison.", "note"))
    else:
        changes = config_diff(flatten_values(config), defaults.values, defaults.interpolations,
                              skip=defaults.skip, skip_prefixes=defaults.skip_prefixes)
        if changes:
            rows = [[c.key, show(c.default), show(c.value), f"follows {c.follows}" if c.follows else "changed"]
                    for c in changes]
            blocks.append(Table(["key", "default", "this run", "why"], rows,
                                caption=f"Differences from the default config ({defaults.name or 'defaults'})"))
        else:
            blocks.append(Paragraph("The resolved config equals the default config.", "note"))
        blocks.append(Paragraph("Compared key by key after resolving interpolations; locations (paths.*, "
                                "output folders) are not compared. \"follows\" marks a value that changed "
                                "only because the key it interpolates did.", "note"))
    if config_text:
        blocks.append(Details(f"Full resolved config ({C.CONFIG}; paths relative to the project root)",
                              Code(shareable(config_text), "yaml")))
    return Section("config", "What was run", blocks), changes


def _environment_section(record: RunRecord) -> Section:
    tags = record.tags
    env = {k.removeprefix(C.TAG_ENV_PREFIX): v for k, v in tags.items() if k.startswith(C.TAG_ENV_PREFIX)}
    dirty = tags.get(C.TAG_GIT_DIRTY)
    items = [(k, env[k]) for k in ENV_KEYS if k in env]
    items += [("git commit", tags.get(C.TAG_GIT_COMMIT, "– (not a git checkout)")),
              ("uncommitted changes", {"true": "yes: the tree was dirty", "false": "no"}.get(dirty or "", "–"))]
    blocks: list[Any] = [KeyValues(items)]
    if dirty == "true":
        blocks.append(Paragraph("The working tree had uncommitted changes when this ran: the commit alone does "
                                "not reproduce it exactly.", "warning"))
    packages = [[k, v] for k, v in sorted(env.items()) if k not in ENV_KEYS]
    if packages:
        blocks.append(Table(["package", "version"], packages, caption="Package versions"))
    system = sorted((k, v) for k, v in record.metrics.items() if k.startswith("system/"))
    if system:
        blocks.append(Table(["system metric", "last value"], [[k, fmt(v)] for k, v in system], numeric={1},
                            caption="System metrics (last sample)"))
    return Section("environment", "Where it ran", blocks)


def _data_section(record: RunRecord, stats: Mapping[str, Any] | None, label_names: list[str]) -> Section:
    tags = record.tags
    items = [("dataset", tags.get(C.TAG_DATA_NAME, "–")), ("digest", tags.get(C.TAG_DATA_DIGEST, "–"))]
    sources = list(dict.fromkeys(dataset_source(d.source) for d in record.datasets))
    items += [("source", s) for s in sources]
    items.append(("classes", ", ".join(label_names) if label_names else "–"))
    blocks: list[Any] = [KeyValues(items)]
    if stats:
        sizes, counts = stats.get("sizes", {}), stats.get("class_counts", {})
        splits = [s for s in ("train", "validation", "test") if s in sizes] + [s for s in sizes if s not in
                                                                           ("train", "validation", "test")]
        rows = []
        for split in splits:
            per_class = counts.get(split, {})
            total = sizes.get(split) or 0
            cells = [f"{per_class.get(n, 0)} ({100 * per_class.get(n, 0) / total:.1f}%)" if total else "0"
                     for n in label_names]
            rows.append([split, fmt(total), *cells])
        blocks.append(Table(["split", "examples", *label_names], rows, numeric=set(range(1, len(label_names) + 2)),
                            caption="Sizes and class balance"))
        labels = {"n_truncated": "truncated to max_length", "n_duplicates_across_splits": "texts in two splits",
                  "max_tokens": "longest text (tokens)", "mean_tokens": "mean length (tokens)"}
        extra = [(label, fmt(stats[k], 1)) for k, label in labels.items() if k in stats]
        if "unk_rate" in stats:
            extra.append(("[UNK] tokens (validation)", f"{100 * stats['unk_rate']:.1f}%"))
        if extra:
            blocks.append(KeyValues(extra))
    else:
        blocks.append(Paragraph(f"The run has no {C.DATA_STATS} artifact.", "warning"))
    if record.datasets:
        blocks.append(Table(["context", "MLflow dataset", "digest", "profile"],
                            [[d.context, d.name, d.digest, _profile(d.profile)] for d in record.datasets],
                            caption="Dataset inputs logged to MLflow"))
    return Section("data", "Data", blocks)


def dataset_source(source: str) -> str:
    """A dataset input's source as a reader wants it: MLflow stores it as JSON (``{"uri": ...}``,
    ``{"tags": {"uri": ...}}``, ``{"url": ...}``); show the location, relative to the project
    root when it is inside it."""
    try:
        value: Any = json.loads(source)
    except (TypeError, ValueError):
        return shareable(str(source))
    for _ in range(3):  # {"tags": {"uri": ...}} is two levels deep
        if not isinstance(value, dict):
            break
        found = next((value[k] for k in ("uri", "url", "path", "dataset_source", "name") if value.get(k)), None)
        if found is not None:
            return shareable(str(found))
        value = value.get("tags", value.get("source"))
    return shareable(str(source))


def _profile(profile: str) -> str:
    """A dataset profile (JSON, e.g. ``{"num_rows": 400}``) as ``num rows 400``."""
    try:
        value = json.loads(profile) if profile else None
    except ValueError:
        return profile
    if not isinstance(value, dict):
        return profile or "–"
    return ", ".join(f"{str(k).replace('_', ' ')} {fmt(v)}" for k, v in value.items()) or "–"


def _training_section(record: RunRecord) -> Section:
    h = record.histories
    blocks: list[Any] = []
    if h:
        blocks.append(Image("learning_curves.png", learning_curves_png(h), "learning curves",
                            "Metric history from MLflow: train/loss per logged step, validation metrics per epoch."))
    epochs = max((len(h.get(k, [])) for k in ("val/loss", "val/acc", "val/f1", "train/acc")), default=0)
    if epochs:
        keys = [k for k in ("train/acc", "val/loss", "val/acc", "val/f1") if k in h]
        rows = []
        for e in range(epochs):
            step = next((h[k][e][0] for k in keys if e < len(h[k])), None)
            rows.append([str(e), fmt(step), *[fmt(h[k][e][1]) if e < len(h[k]) else "–" for k in keys]])
        blocks.append(Table(["epoch", "step", *keys], rows, numeric=set(range(1, len(keys) + 2)),
                            caption="Per-epoch values"))
    if C.TAG_BEST_CHECKPOINT in record.tags:
        blocks.append(Paragraph(f"Tested and shipped checkpoint: {record.tags[C.TAG_BEST_CHECKPOINT]}", "note"))
    if not blocks:
        blocks.append(Paragraph("No training metrics were logged.", "warning"))
    return Section("training", "Learning curves", blocks)


def _timings_section(record: RunRecord) -> Section:
    m = record.metrics
    stages = sorted((k, v) for k, v in m.items() if k.startswith("time/"))
    blocks: list[Any] = []
    if stages:
        duration = _duration(record)
        rows = [[k.removeprefix("time/").removesuffix("_s"), format_seconds(v),
                 f"{100 * v / duration:.0f}%" if duration else "–"] for k, v in stages if _is_stage_time(k)]
        blocks.append(Table(["stage", "time", "share of the total"], rows, numeric={1, 2},
                            caption="Time per stage"))
    per_example = sorted((k, v) for k, v in m.items() if k.endswith("/seconds_per_example"))
    throughput = [(k, v) for k, v in m.items() if k == "train/tokens_per_sec"]
    if per_example or throughput:
        blocks.append(Table(["metric", "value"], [[k, fmt(v)] for k, v in [*throughput, *per_example]], numeric={1},
                            caption="Throughput"))
    duration = _duration(record)
    if duration is not None:
        blocks.append(Paragraph(f"Total of the stage timings: {format_seconds(duration)} (from the {C.TIME_PREFIX}/<stage>_s "
                                "metrics the run logged, not from its start and end times).", "note"))
    if not blocks:
        blocks.append(Paragraph("No timings were logged.", "note"))
    return Section("timings", "Timings", blocks)


def reproduce_commands(record: RunRecord, overrides: Sequence[str]) -> str:
    commit = record.tags.get(C.TAG_GIT_COMMIT)
    lines = []
    if record.derived is not None:
        return "\n".join([f"{record.derived.rerun}   # make this derived run again (a new child run)",
                          f"python -m pipeline.reproduce run_id={record.derived.root_id}   # re-run the trained run"])
    if commit:
        dirty = record.tags.get(C.TAG_GIT_DIRTY) == "true"
        lines.append(f"git checkout {commit}" + ("   # the tree was dirty: uncommitted changes are not in git" if dirty else ""))
    lines.append(f"python -m pipeline.reproduce run_id={record.run_id}   # re-run from the logged config, compare every metric")
    if not record.tags.get(C.TAG_REPRODUCES):
        lines.append("# or from scratch, with the same overrides:")
        lines.append(" ".join(["python", "-m", f"pipeline.{record.task}", *[shlex.quote(o) for o in overrides]]))
    return "\n".join(lines)


def _reproduce_section(record: RunRecord, overrides: Sequence[str]) -> Section:
    blocks: list[Any] = [Code(reproduce_commands(record, overrides), "bash"),
                         Paragraph(f"pipeline.reproduce starts a new run tagged {C.TAG_REPRODUCES} with this run's "
                                   "config and exits non-zero when any final metric (timings, throughput and system "
                                   "metrics excluded) differs beyond reproduce.atol / reproduce.rtol.", "note")]
    return Section("reproduce", "Reproduce", blocks)


# --------------------------------------------------------------------------- the report
def build_run_report(record: RunRecord, defaults: DefaultConfig | None = None,
                     predictions: TestPredictions | None = None, prediction_error: str | None = None,
                     options: RunReportOptions | None = None,
                     task_sections: Callable[..., list[Section]] | None = None) -> Document:
    """The whole report of one run as a :class:`Document` (render it with render_html / render_markdown).

    ``task_sections(record, label_names, predictions, prediction_error, options, summary)``: the
    sections the run's task contributes (``Task.report_sections``); default: a classifier's.
    """
    options = options or RunReportOptions()
    art = record.artifacts
    config_text = art.text(C.CONFIG) if art else None
    overrides = record.overrides()
    config = (yaml.safe_load(config_text) if config_text else None) or {}
    stats = art.json(C.DATA_STATS) if art else None
    label_names = _label_names(record)
    summary: dict[str, Any] = {"run_id": record.run_id, "run_name": record.name, "status": record.status,
                               "derived_from": record.derived.parent_id if record.derived else None,
                               "derived_runs": [{"run_id": r.run_id, "stage": r.stage, "status": r.status,
                                                 "settings": r.settings, "url": r.url} for r in record.derived_runs],
                               "metrics": dict(sorted(record.metrics.items())),
                               "history_lengths": {k: len(v) for k, v in sorted(record.histories.items())}}
    config_section, changes = _config_section(record, config_text, defaults, overrides)
    summary["config_changes"] = [{"key": c.key, "default": show(c.default), "value": show(c.value),
                                  "follows": c.follows} for c in changes]
    sections = [
        _summary(record, config),
        config_section,
        _environment_section(record),
        _data_section(record, stats, label_names),
        model_section(record),
        _training_section(record),
        *(task_sections or classifier_sections)(record, label_names, predictions, prediction_error, options, summary),
        _timings_section(record),
        _derived_runs_section(record),
        _reproduce_section(record, overrides),
    ]
    sections = [s for s in sections if s is not None]
    summary["sections"] = [s.title for s in sections]
    summary["reproduce"] = reproduce_commands(record, overrides)
    subtitle = (f"MLflow run {record.run_id} · experiment {record.experiment_name} · "
                f"{record.tags.get(C.TAG_DATA_NAME, 'data')} · started {format_time(record.start_ms)}")
    return Document(f"Run report: {record.name}", subtitle, sections, summary)
