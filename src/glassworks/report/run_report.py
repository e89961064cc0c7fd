"""The report of one run: what ran, where, on which data, how it learned, how it scores, how its
explanations and robustness compare with chance, how long each stage took, how to reproduce it.

Every number comes from the :class:`~glassworks.report.collect.RunRecord` (MLflow's values and
artifacts); the only inputs from elsewhere are the default config (for the diff) and the test
predictions (for the confusion matrix), both computed by the entry point from the run itself.
"""

from __future__ import annotations

import datetime as dt
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import yaml

from glassworks.report.collect import RunRecord
from glassworks.report.config_diff import ConfigChange, config_diff, flatten_values, show
from glassworks.report.document import (
    Code, Details, Document, Gallery, Headline, Image, KeyValues, Metric, Paragraph, Section, Table, TokenExample,
    TokenRow, fmt,
)  # fmt: skip
from glassworks.report.figures import confusion_matrix, confusion_png, learning_curves_png

# Faithfulness / plausibility columns: (metric key, header, True if higher is better).
EXPLAIN_COLUMNS = (
    ("comprehensiveness", "comprehensiveness ↑", True),
    ("sufficiency", "sufficiency ↓", False),
    ("aopc", "AOPC ↑", True),
    ("rationale_auprc", "rationale AUPRC ↑", True),
    ("rationale_f1", "rationale F1 ↑", True),
)
ROBUSTNESS_COLUMNS = (
    ("deletion_auc", "deletion AUC ↓", False),
    ("insertion_auc", "insertion AUC ↑", True),
    ("flip_rate_at_1", "flip rate @1 ↑", True),
    ("flip_rate_at_5", "flip rate @5 ↑", True),
    ("attack_success", "attack success ↑", True),
    ("mean_edits", "mean edits ↓", False),
    ("stability", "stability ↑", True),
)
EXPLAIN_BASELINE = "random"
ROBUSTNESS_BASELINE = "random_order"
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


@dataclass
class TestPredictions:
    """The run's model on the test split: true and predicted class per example."""

    y_true: np.ndarray  # (N,)
    y_pred: np.ndarray  # (N,)
    source: str  # how they were obtained, shown under the matrix


@dataclass
class RunReportOptions:
    n_examples: int = 3
    top_tokens: int = 5


def format_time(ms: int | None) -> str:
    if not ms:
        return "–"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def _label_names(record: RunRecord) -> list[str]:
    stats = record.artifacts.json("data/stats.json") if record.artifacts else None
    if stats and stats.get("label_names"):
        return [str(n) for n in stats["label_names"]]
    names = record.params.get("data.label_names")
    return names.split(",") if names else []


def _name(label_names: Sequence[str], index: int) -> str:
    return str(label_names[index]) if 0 <= index < len(label_names) else str(index)


# --------------------------------------------------------------------------- sections
def _summary(record: RunRecord, config: Mapping[str, Any]) -> Section:
    m = record.metrics
    cards = []
    for key, label in (("test/acc", "test accuracy"), ("test/f1", "test macro F1"), ("val/acc", "val accuracy")):
        if key in m:
            cards.append(Metric(label, fmt(m[key]), key))
    best = _best_method(m)
    if best:
        method, value = best
        cards.append(Metric("most faithful", method, f"comprehensiveness {fmt(value)}"))
    duration = _duration(record)
    if duration is not None:
        cards.append(Metric("wall time", _seconds(duration), "start to end"))
    status = record.status + (" (report built as the run's last stage)" if record.status == "RUNNING" else "")
    model = config.get("model", {}) if isinstance(config.get("model"), Mapping) else {}
    model_text = ", ".join(f"{k}={v}" for k, v in model.items() if k != "_target_") or record.params.get("model._target_", "–")
    items = [
        ("run", f"{record.name} ({record.run_id})"),
        ("experiment", f"{record.experiment_name} ({record.experiment_id})"),
        ("status", status),
        ("task", f"pipeline.{record.task}"),
        ("started", format_time(record.start_ms)),
        ("data", record.tags.get("glassworks.data.name", "–")),
        ("model", f"{str(model.get('_target_', '')).rsplit('.', 1)[-1]} {model_text}".strip()),
        ("seed", record.tags.get("glassworks.seed", record.params.get("seed", "–"))),
    ]
    if record.tags.get("glassworks.reproduces"):
        items.append(("reproduces run", record.tags["glassworks.reproduces"]))
    if record.tags.get("mlflow.parentRunId"):
        items.append(("sweep (parent run)", record.tags["mlflow.parentRunId"]))
    blocks: list[Any] = [Headline(cards), KeyValues(items)]
    if record.tags.get("glassworks.error"):
        stage = record.tags.get("glassworks.failed_stage", "?")
        blocks.insert(0, Paragraph(f"The run failed in stage {stage}: {record.tags['glassworks.error']} "
                                   "(traceback: artifact error.txt)", "warning"))
    return Section("summary", "Summary", blocks)


def _duration(record: RunRecord) -> float | None:
    if not record.start_ms:
        return None
    end = record.end_ms or int(dt.datetime.now(tz=dt.timezone.utc).timestamp() * 1000)
    return max(0.0, (end - record.start_ms) / 1000)


def _best_method(metrics: Mapping[str, float]) -> tuple[str, float] | None:
    scores = {k.split("/")[1]: v for k, v in metrics.items()
              if k.startswith("explain/") and k.endswith("/comprehensiveness") and k.split("/")[1] != EXPLAIN_BASELINE}
    scores = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not scores:
        return None
    method = max(scores, key=lambda k: scores[k])
    return method, scores[method]


def _config_section(record: RunRecord, config_text: str | None, defaults: DefaultConfig | None,
                    overrides: list[str]) -> tuple[Section, list[ConfigChange]]:
    blocks: list[Any] = [KeyValues([("task", f"pipeline.{record.task}"),
                                    ("command line", record.tags.get("glassworks.command", "–"))])]
    blocks.append(Paragraph("Overrides given on the command line:" if overrides else
                            "No overrides: the run used the default config."))
    if overrides:
        blocks.append(Code("\n".join(overrides)))
    changes: list[ConfigChange] = []
    config = yaml.safe_load(config_text) if config_text else None
    if config is None:
        blocks.append(Paragraph("The run has no config/config.yaml artifact.", "warning"))
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
        blocks.append(Details("Full resolved config (config/config.yaml)", Code(config_text, "yaml")))
    return Section("config", "What was run", blocks), changes


def _environment_section(record: RunRecord) -> Section:
    tags = record.tags
    env = {k.removeprefix("glassworks.env."): v for k, v in tags.items() if k.startswith("glassworks.env.")}
    dirty = tags.get("glassworks.git_dirty")
    items = [(k, env[k]) for k in ENV_KEYS if k in env]
    items += [("git commit", tags.get("mlflow.source.git.commit", "– (not a git checkout)")),
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
    items = [("dataset", tags.get("glassworks.data.name", "–")), ("digest", tags.get("glassworks.data.digest", "–"))]
    sources = list(dict.fromkeys(d.source for d in record.datasets))
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
        extra = [(label, fmt(stats[k])) for k, label in labels.items() if k in stats]
        if extra:
            blocks.append(KeyValues(extra))
    else:
        blocks.append(Paragraph("The run has no data/stats.json artifact.", "warning"))
    if record.datasets:
        blocks.append(Table(["context", "MLflow dataset", "digest", "profile"],
                            [[d.context, d.name, d.digest, d.profile] for d in record.datasets],
                            caption="Dataset inputs logged to MLflow"))
    return Section("data", "Data", blocks)


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
    if "glassworks.best_checkpoint" in record.tags:
        blocks.append(Paragraph(f"Tested and shipped checkpoint: {record.tags['glassworks.best_checkpoint']}", "note"))
    if not blocks:
        blocks.append(Paragraph("No training metrics were logged.", "warning"))
    return Section("training", "Learning curves", blocks)


def _test_section(record: RunRecord, label_names: list[str], predictions: TestPredictions | None,
                  prediction_error: str | None, summary: dict[str, Any]) -> Section:
    m = record.metrics
    keys = [k for k in ("test/acc", "test/f1", "test/loss", "val/acc", "val/f1", "val/loss", "train/loss") if k in m]
    blocks: list[Any] = [Table(["metric", "value"], [[k, fmt(m[k])] for k in keys], numeric={1},
                               caption="Final metrics (latest logged value)")] if keys else []
    if predictions is not None and len(predictions.y_true):
        n = max(len(label_names), int(max(predictions.y_true.max(), predictions.y_pred.max())) + 1)
        names = [_name(label_names, i) for i in range(n)]
        matrix = confusion_matrix(predictions.y_true, predictions.y_pred, n)
        accuracy = float(np.trace(matrix) / matrix.sum())
        rows = [[f"true {names[i]}", *[str(v) for v in matrix[i]], fmt(matrix[i, i] / max(1, matrix[i].sum()))]
                for i in range(n)]
        blocks.append(Table(["", *[f"pred {x}" for x in names], "recall"], rows, numeric=set(range(1, n + 2)),
                            highlight={(i, i + 1) for i in range(n)},
                            caption=f"Confusion matrix, test split ({int(matrix.sum())} examples)"))
        blocks.append(Image("confusion_matrix.png", confusion_png(matrix, names), "confusion matrix"))
        logged = m.get("test/acc")
        agree = logged is not None and abs(logged - accuracy) <= 1.0 / matrix.sum() + 1e-6
        blocks.append(Paragraph(
            f"{predictions.source} Accuracy from the matrix: {fmt(accuracy)}"
            + (f"; logged test/acc: {fmt(logged)}." if logged is not None else "."),
            "note" if agree or logged is None else "warning"))
        summary["confusion_matrix"] = {"labels": names, "counts": matrix.tolist(), "accuracy": accuracy}
    elif prediction_error:
        blocks.append(Paragraph(f"No confusion matrix: {prediction_error}", "warning"))
    if not blocks:
        blocks.append(Paragraph("The run logged no test metrics (test=false?).", "note"))
    return Section("test", "Test results", blocks)


def _method_table(metrics: Mapping[str, float], prefix: str, columns: Sequence[tuple[str, str, bool]],
                  baseline: str, caption: str, extra: Sequence[tuple[str, str]] = ()) -> Table | None:
    methods = list(dict.fromkeys(k.split("/")[1] for k in metrics
                                 if k.startswith(prefix) and k.count("/") == 2 and k.split("/")[1] != "agreement"))
    if not methods:
        return None
    methods = [m for m in methods if m != baseline] + ([baseline] if baseline in methods else [])
    columns = [c for c in columns if any(f"{prefix}{m}/{c[0]}" in metrics for m in methods)]
    rows, highlight = [], set()
    for r, method in enumerate(methods):
        row = [method + (" (baseline)" if method == baseline else "")]
        for c, (key, _, higher) in enumerate(columns, start=1):
            value = metrics.get(f"{prefix}{method}/{key}")
            base = metrics.get(f"{prefix}{baseline}/{key}")
            row.append(fmt(value))
            if method != baseline and value is not None and base is not None and math.isfinite(value) \
                    and math.isfinite(base) and (value > base if higher else value < base):
                highlight.add((r, c))
        for key, _ in extra:
            row.append(fmt(metrics.get(f"{prefix}{method}/{key}")))
        rows.append(row)
    headers = ["method", *[c[1] for c in columns], *[e[1] for e in extra]]
    return Table(headers, rows, caption=caption, numeric=set(range(1, len(headers))), highlight=highlight)


def _examples(record: RunRecord, table: pd.DataFrame, label_names: list[str], options: RunReportOptions) -> list[TokenExample]:
    methods = list(dict.fromkeys(table["method"]))
    first = table.sort_values(["example_id", "position"]).groupby("example_id", sort=True).first()
    wrong = [int(i) for i, r in first.iterrows() if int(r["prediction"]) != int(r["label"])]
    right = [int(i) for i, r in first.iterrows() if int(r["prediction"]) == int(r["label"])]
    # One misclassified example when there is one: it is what a reader most wants to inspect.
    chosen = sorted((wrong[:1] + right + wrong[1:])[: max(0, options.n_examples)])
    out = []
    for example_id in chosen:
        rows_of = table[table["example_id"] == example_id]
        head = first.loc[example_id]
        label, prediction = int(head["label"]), int(head["prediction"])
        info = [("true label", _name(label_names, label)),
                ("prediction", f"{_name(label_names, prediction)} (p={fmt(float(head['model_output']))})"),
                ("verdict", "correct" if label == prediction else "misclassified")]
        rows = []
        for method in methods:
            mr = rows_of[rows_of["method"] == method].sort_values("position")
            if mr.empty:
                continue
            tokens = mr["token"].astype(str).tolist()
            scores = mr["score"].to_numpy(dtype=np.float64)  # (T,)
            rationale = None
            if "rationale" in mr and not mr["rationale"].isna().any():
                rationale = [int(v) for v in mr["rationale"]]
            order = [p for p in np.argsort(-np.nan_to_num(scores[1:], nan=-np.inf), kind="stable") + 1][: options.top_tokens]
            top = [(tokens[p], fmt(scores[p], 3)) for p in order if math.isfinite(scores[p])]
            base = mr["base_value"].iloc[0] if "base_value" in mr else float("nan")
            meta = f"explains {_name(label_names, int(mr['target'].iloc[0]))}"
            if pd.notna(base):
                meta += f" · base value {fmt(float(base))} + Σ scores {fmt(float(base) + float(np.nansum(scores)))}"
            rows.append(TokenRow(method, tokens, scores.tolist(), rationale, top, meta))
        out.append(TokenExample(f"Test example {example_id}", info, rows))
    return out


def _explain_section(record: RunRecord, label_names: list[str], options: RunReportOptions) -> Section | None:
    m = record.metrics
    if not any(k.startswith("explain/") for k in m):
        return None
    art = record.artifacts
    table = art.parquet("explanations/attributions.parquet") if art else None
    blocks: list[Any] = []
    n = int(table["example_id"].nunique()) if table is not None else None
    methods = [k.split("/")[1] for k in m if k.startswith("explain/") and k.endswith("/comprehensiveness")
               and k.split("/")[1] != EXPLAIN_BASELINE]
    blocks.append(Paragraph(
        f"{len(methods)} method{'s' if len(methods) != 1 else ''} ({', '.join(methods)}) and the random baseline"
        + (f" on {n} test examples" if n else "")
        + " (a seeded, class-stratified sample that includes misclassified ones). Faithfulness: how much the "
        "prediction depends on the top-attributed tokens (ERASER comprehensiveness/sufficiency, AOPC); "
        "plausibility: agreement with the planted ground-truth rationale. Green cells beat the random baseline."))
    skipped = {k.split("/")[1]: int(v) for k, v in m.items()
               if k.startswith("explain/") and k.endswith("/n_skipped") and v > 0}
    if skipped:  # a method's limit (input length, budget) skipped these; its metrics cover the rest
        blocks.append(Paragraph("Skipped by a method's limit (its metrics cover the other examples): " + ", ".join(
            f"{method} {count} example{'s' if count != 1 else ''}" for method, count in sorted(skipped.items())) + ".",
            "note"))
    faith = _method_table(m, "explain/", EXPLAIN_COLUMNS, EXPLAIN_BASELINE,
                          "Faithfulness and plausibility against the random baseline",
                          extra=(("seconds_per_example", "s / example"),))
    if faith:
        blocks.append(faith)
    agreement = sorted((k.removeprefix("explain/agreement/"), v) for k, v in m.items() if k.startswith("explain/agreement/"))
    if agreement:
        blocks.append(Table(["methods", "rank agreement (Spearman ρ)"], [[k.replace("_vs_", " vs "), fmt(v)] for k, v in agreement],
                            numeric={1}, caption="Agreement between methods"))
    figures = []
    for path, name, caption in (("explanations/metrics.png", "explain_metrics.png", "Every method against the random baseline (dashed)"),
                                ("explanations/global_importance.png", "global_importance.png", "Global token importance")):
        png = art.bytes(path) if art else None
        if png:
            figures.append(Image(name, png, caption, f"{caption} (artifact {path})"))
    blocks.extend(figures)  # full width each: the metric panels are wide
    if table is not None and not table.empty and options.n_examples > 0:
        blocks.append(Paragraph("Examples, every method side by side:", "text"))
        blocks.extend(_examples(record, table, label_names, options))
        blocks.append(Paragraph("Every explained example has its own page in the run's explanations/examples/ "
                                "artifact folder (explanations/index.html links them).", "note"))
    return Section("explanations", "Explanations", blocks)


def _robustness_section(record: RunRecord, label_names: list[str]) -> Section | None:
    m = record.metrics
    if not any(k.startswith("robustness/") for k in m):
        return None
    blocks: list[Any] = [Paragraph(
        "Masking each method's top-k tokens (deletion) or keeping only them (insertion), and a greedy word-"
        "substitution attack guided by the attributions. A faithful method makes the prediction fall fast "
        "(low deletion AUC, high flip rate) and needs few edits; stability is the rank correlation of its "
        "attributions under prediction-preserving edits. Green cells beat the random order.")]
    table = _method_table(m, "robustness/", ROBUSTNESS_COLUMNS, ROBUSTNESS_BASELINE,
                          "Robustness per attribution method against a random order",
                          extra=(("mean_prob_drop", "mean p drop"),))
    if table:
        blocks.append(table)
    art = record.artifacts
    figures = []
    for path, caption in (("robustness/curves_deletion.png", "Deletion curves"),
                          ("robustness/curves_insertion.png", "Insertion curves"),
                          ("robustness/flip_rate.png", "Flip rate at k")):
        png = art.bytes(path) if art else None
        if png:
            figures.append(Image(path.split("/")[-1], png, caption, f"{caption} (artifact {path})"))
    if figures:
        blocks.append(Gallery(figures))
    attacks = art.parquet("robustness/attacks.parquet") if art else None
    if attacks is not None and not attacks.empty:
        hits = attacks[attacks["success"]].sort_values(["n_edits", "method", "example_id"]).head(5)
        if not hits.empty:
            rows = [[str(r.method), str(int(r.example_id)), str(int(r.n_edits)),
                     f"{fmt(r.prob_before)} → {fmt(r.prob_after)}", _name(label_names, int(r.prediction_after)),
                     str(r.original_text), str(r.perturbed_text)] for r in hits.itertuples()]
            blocks.append(Table(["method", "example", "edits", "p(original class)", "new prediction", "original",
                                 "perturbed"], rows, numeric={1, 2},
                                caption="Successful attacks with the fewest edits (all: robustness/adversarial_examples.html)"))
    return Section("robustness", "Robustness", blocks)


def _timings_section(record: RunRecord) -> Section:
    m = record.metrics
    stages = sorted((k, v) for k, v in m.items() if k.startswith("time/"))
    blocks: list[Any] = []
    if stages:
        rows = [[k.removeprefix("time/").removesuffix("_s"), fmt(v), _seconds(v)] for k, v in stages]
        blocks.append(Table(["stage", "seconds", ""], rows, numeric={1, 2}, caption="Time per stage"))
    per_example = sorted((k, v) for k, v in m.items() if k.endswith("/seconds_per_example"))
    throughput = [(k, v) for k, v in m.items() if k == "train/tokens_per_sec"]
    if per_example or throughput:
        blocks.append(Table(["metric", "value"], [[k, fmt(v)] for k, v in [*throughput, *per_example]], numeric={1},
                            caption="Throughput"))
    duration = _duration(record)
    if duration is not None:
        blocks.append(Paragraph(f"Wall time from run start to {'end' if record.end_ms else 'now'}: {_seconds(duration)}.",
                                "note"))
    if not blocks:
        blocks.append(Paragraph("No timings were logged.", "note"))
    return Section("timings", "Timings", blocks)


def reproduce_commands(record: RunRecord, overrides: Sequence[str]) -> str:
    commit = record.tags.get("mlflow.source.git.commit")
    lines = []
    if commit:
        dirty = record.tags.get("glassworks.git_dirty") == "true"
        lines.append(f"git checkout {commit}" + ("   # the tree was dirty: uncommitted changes are not in git" if dirty else ""))
    lines.append(f"python -m pipeline.reproduce run_id={record.run_id}   # re-run from the logged config, compare every metric")
    if not record.tags.get("glassworks.reproduces"):
        lines.append("# or from scratch, with the same overrides:")
        lines.append(" ".join(["python", "-m", f"pipeline.{record.task}", *[shlex.quote(o) for o in overrides]]))
    return "\n".join(lines)


def _reproduce_section(record: RunRecord, overrides: Sequence[str]) -> Section:
    blocks: list[Any] = [Code(reproduce_commands(record, overrides), "bash"),
                         Paragraph("pipeline.reproduce starts a new run tagged glassworks.reproduces with this run's "
                                   "config and exits non-zero when any final metric (timings, throughput and system "
                                   "metrics excluded) differs beyond reproduce.atol / reproduce.rtol.", "note")]
    return Section("reproduce", "Reproduce", blocks)


# --------------------------------------------------------------------------- the report
def build_run_report(record: RunRecord, defaults: DefaultConfig | None = None,
                     predictions: TestPredictions | None = None, prediction_error: str | None = None,
                     options: RunReportOptions | None = None) -> Document:
    """The whole report of one run as a :class:`Document` (render it with render_html / render_markdown)."""
    options = options or RunReportOptions()
    art = record.artifacts
    config_text = art.text("config/config.yaml") if art else None
    overrides_text = art.text("config/overrides.txt") if art else None
    overrides = [line for line in (overrides_text or "").splitlines() if line.strip()]
    config = (yaml.safe_load(config_text) if config_text else None) or {}
    stats = art.json("data/stats.json") if art else None
    label_names = _label_names(record)
    summary: dict[str, Any] = {"run_id": record.run_id, "run_name": record.name, "status": record.status,
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
        _training_section(record),
        _test_section(record, label_names, predictions, prediction_error, summary),
        _explain_section(record, label_names, options),
        _robustness_section(record, label_names),
        _timings_section(record),
        _reproduce_section(record, overrides),
    ]
    sections = [s for s in sections if s is not None]
    summary["sections"] = [s.title for s in sections]
    summary["reproduce"] = reproduce_commands(record, overrides)
    subtitle = (f"MLflow run {record.run_id} · experiment {record.experiment_name} · "
                f"{record.tags.get('glassworks.data.name', 'data')} · started {format_time(record.start_ms)}")
    return Document(f"Run report: {record.name}", subtitle, sections, summary)
