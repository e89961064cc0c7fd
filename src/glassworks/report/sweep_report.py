"""The report of a sweep: its children side by side, the best configuration, how the objective
moves with each swept parameter, and whether more accurate models also explain better.

Children are the runs tagged ``mlflow.parentRunId = <sweep id>``; the swept parameters are the
params whose values differ between children (location params such as output folders excluded).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from glassworks.report.collect import RunRecord
from glassworks.report.document import (
    Code, Document, Headline, Image, KeyValues, Metric, Paragraph, Section, Table, fmt,
)  # fmt: skip
from glassworks.report.figures import accuracy_vs_explanations_png, metric_vs_params_png
from glassworks.report.run_report import format_seconds, format_time
from glassworks.tracking import contract as C
from glassworks.tracking.metadata import shareable
from glassworks.tracking.objective import MODES, pick_best
from glassworks.validation import ConfigError

LOCATION_PREFIXES = ("paths.", "hydra.")
# Where the run was stored, not what it did (MLFLOW_TRACKING_URI may differ between jobs).
LOCATION_KEYS = frozenset({"logger.tracking_uri", "logger.store_dir"})
# Panels of the objective-against-parameter figure: past this many, the figure is unreadable (and
# 140 panels took matplotlib ~30 s); the children table still lists every swept parameter.
MAX_PARAM_PANELS = 12


@dataclass
class SweepObjective:
    metric: str = "val/acc"
    mode: str = "max"  # max | min

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError("report.sweep.mode", f"must be one of {list(MODES)}, got {self.mode!r}")


@dataclass
class Child:
    """What the sweep report needs of one child run (plain values, from MLflow)."""

    run_id: str
    name: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]

    @classmethod
    def from_run(cls, run: Any) -> Child:
        return cls(run.info.run_id, run.info.run_name or run.info.run_id, run.info.status, dict(run.data.params),
                   dict(run.data.metrics), dict(run.data.tags))


def swept_params(children: Sequence[Child]) -> list[str]:
    """Params whose value differs between children, minus locations (a child's own output folder)."""
    keys = sorted({k for c in children for k in c.params})
    out = []
    for key in keys:
        if key.startswith(LOCATION_PREFIXES) or key in LOCATION_KEYS:
            continue
        values = [c.params.get(key) for c in children]
        if len(set(values)) <= 1:
            continue
        # A path under each child's own output folder differs by construction, not by choice.
        if all(v is not None and c.params.get("paths.output_dir") and v.startswith(c.params["paths.output_dir"])
               for c, v in zip(children, values, strict=True)):
            continue
        out.append(key)
    return out


def plotted_params(children: Sequence[Child], swept: Sequence[str]) -> list[str]:
    """The swept params the objective is plotted against: those with at least two different
    values among the children that have them, at most MAX_PARAM_PANELS, in ``swept``'s order.

    A param only some children have, with one value (a child from an older config, a ``+tags``
    override), differs between children but is no axis of the sweep."""
    axes = [k for k in swept if len({c.params[k] for c in children if k in c.params}) >= 2]
    return axes[:MAX_PARAM_PANELS]


def best_child(children: Sequence[Child], objective: SweepObjective) -> int | None:
    """Index of the best child, picked as the sweep's parent run picks it."""
    return pick_best(((i, c.status, c.metrics.get(objective.metric)) for i, c in enumerate(children)),
                     objective.mode)


def _methods(children: Sequence[Child]) -> list[str]:
    methods = dict.fromkeys(k.split("/")[1] for c in children for k in c.metrics
                            if k.startswith("explain/") and k.endswith("/comprehensiveness"))
    return [m for m in methods if m != C.EXPLAIN_BASELINE] + ([C.EXPLAIN_BASELINE] if C.EXPLAIN_BASELINE in methods else [])


def build_sweep_report(parent: RunRecord, children: Sequence[Child], objective: SweepObjective,
                       accuracy_metric: str = "test/acc", quality_metric: str = "comprehensiveness") -> Document:
    swept = swept_params(children)
    best = best_child(children, objective)
    methods = _methods(children)
    summary: dict[str, Any] = {"sweep_id": parent.run_id, "objective": {"metric": objective.metric, "mode": objective.mode},
                               "swept_params": swept, "best_run_id": children[best].run_id if best is not None else None,
                               "children": [{"run_id": c.run_id, "status": c.status,
                                             "params": {k: c.params.get(k) for k in swept},
                                             "metrics": dict(sorted(c.metrics.items()))} for c in children]}
    finished = sum(c.status == "FINISHED" for c in children)
    cards = [Metric("children", str(len(children)), f"{finished} finished")]
    if best is not None:
        cards.append(Metric(f"best {objective.metric}", fmt(children[best].metrics[objective.metric]), children[best].name))
    overview = Section("summary", "Sweep", [
        Headline(cards),
        KeyValues([("sweep (parent run)", f"{parent.name} ({parent.run_id})"),
                   ("experiment", f"{parent.experiment_name} ({parent.experiment_id})"),
                   ("started", format_time(parent.start_ms)), ("status", parent.status),
                   ("objective", f"{objective.mode} {objective.metric}"),
                   ("swept parameters", ", ".join(swept) or "none differ")]),
    ])
    if parent.tags.get(C.TAG_COMMAND):
        overview.blocks.append(Code(shareable(parent.tags[C.TAG_COMMAND])))

    # Children table
    metric_cols = [k for k in dict.fromkeys([objective.metric, "val/acc", accuracy_metric, "test/f1"])
                   if any(k in c.metrics for c in children)]
    # Explanation quality per method has its own tables below: this one stays narrow enough to read.
    time_cols = [k for k in ("time/train_s", "time/explain_s") if any(k in c.metrics for c in children)]
    headers = ["run", "run id", "status", *swept, *metric_cols, *time_cols]
    rows, highlight = [], set()
    for r, c in enumerate(children):
        rows.append([c.name, c.run_id[:8], c.status, *[c.params.get(k, "–") for k in swept],
                     *[fmt(c.metrics.get(k)) for k in metric_cols],
                     *[format_seconds(c.metrics.get(k)) for k in time_cols]])
        if r == best:
            highlight.update((r, col) for col in range(len(headers)))
    n_text = 3 + len(swept)
    children_section = Section("children", "Children", [
        Table(headers, rows, caption=f"{len(children)} child runs (best by {objective.mode} {objective.metric} in bold)",
              numeric=set(range(n_text, len(headers))), highlight=highlight)
        if children else Paragraph(f"The sweep has no child runs (tag {C.TAG_PARENT_RUN}) yet.", "warning"),
    ])

    sections = [overview, children_section]
    if best is not None:
        b = children[best]
        overrides = b.tags.get(C.TAG_OVERRIDES, "")
        task = b.tags.get(C.TAG_TASK, "run")
        command = "\n".join([f"python -m pipeline.reproduce run_id={b.run_id}",
                             "# or from scratch:",
                             " ".join(["python", "-m", f"pipeline.{task}",
                                       *[shlex.quote(o) for o in overrides.split() if o != "(none)"]])])
        sections.append(Section("best", "Best configuration", [
            KeyValues([("run", f"{b.name} ({b.run_id})"), (objective.metric, fmt(b.metrics[objective.metric])),
                       *[(k, b.params.get(k, "–")) for k in swept]]),
            Paragraph("Reproduce it:"), Code(command, "bash"),
        ]))
        summary["best_params"] = {k: b.params.get(k) for k in swept}

    scored = [c for c in children if objective.metric in c.metrics]
    if scored:
        best_scored = next((i for i, c in enumerate(scored) if best is not None and c.run_id == children[best].run_id), None)
        plotted = plotted_params(scored, swept)
        png = metric_vs_params_png({k: [c.params.get(k, "") for c in scored] for k in plotted},
                                   [c.metrics[objective.metric] for c in scored], objective.metric, best_scored)
        blocks: list[Any] = [Image("metric_vs_params.png", png, f"{objective.metric} against each swept parameter")]
        if len(plotted) < len(swept):
            left = [k for k in swept if k not in plotted]
            blocks.append(Paragraph(f"Not plotted: {len(left)} more parameter(s) that differ between children "
                                    f"({', '.join(left[:8])}{', ...' if len(left) > 8 else ''}); the figure shows "
                                    f"those with two or more values among the children that have them, at most "
                                    f"{MAX_PARAM_PANELS}. The children table lists them all.", "note"))
        sections.append(Section("parameters", "Objective against each parameter", blocks))

    if methods:
        acc = [c.metrics.get(accuracy_metric, math.nan) for c in children]
        quality = {m: [c.metrics.get(f"explain/{m}/{quality_metric}", math.nan) for c in children] for m in methods}
        png = accuracy_vs_explanations_png(acc, quality, accuracy_metric, quality_metric)
        shown = [m + (" (baseline)" if m == C.EXPLAIN_BASELINE else "") for m in methods]
        tables = []
        for metric, caption in ((quality_metric, f"{quality_metric} per method"),
                                ("rationale_auprc", "rationale AUPRC per method (plausibility)")):
            rows = [[c.name, c.run_id[:8], fmt(c.metrics.get(accuracy_metric)),
                     *[fmt(c.metrics.get(f"explain/{m}/{metric}")) for m in methods]] for c in children]
            if any(f"explain/{m}/{metric}" in c.metrics for c in children for m in methods):
                tables.append(Table(["run", "run id", accuracy_metric, *shown], rows, caption=caption,
                                    numeric=set(range(2, 3 + len(methods)))))
        sections.append(Section("accuracy-vs-explanations", "Accuracy vs explanation quality", [
            Image("accuracy_vs_explanations.png", png, "accuracy against explanation quality"),
            *tables,
            Paragraph(f"{quality_metric} (ERASER): the drop of the predicted class's probability when each method's "
                      f"top tokens are masked; {C.EXPLAIN_BASELINE} (random scores) is the chance level. Methods "
                      "that tie on a child draw as nested rings.", "note"),
        ]))
    else:
        sections.append(Section("accuracy-vs-explanations", "Accuracy vs explanation quality",
                                [Paragraph("No child logged explanation metrics (explain.methods=[]?).", "note")]))
    summary["sections"] = [s.title for s in sections]
    subtitle = f"MLflow sweep {parent.run_id} · experiment {parent.experiment_name} · started {format_time(parent.start_ms)}"
    return Document(f"Sweep report: {parent.name}", subtitle, sections, summary)
