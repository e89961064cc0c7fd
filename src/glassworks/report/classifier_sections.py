"""A text classifier's report sections (``ClassifyTask.report_sections``): test results with
the confusion matrix, faithfulness and plausibility against the random baseline with examples,
and the robustness probe against a random order. Metric names, directions and display names
come from the run contract (:mod:`glassworks.tracking.contract`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from glassworks.report.collect import RunRecord
from glassworks.report.document import (
    Gallery, Image, Links, Paragraph, Section, Table, TokenExample, TokenRow, fmt,
)  # fmt: skip
from glassworks.explain.metrics import agreement_matrix
from glassworks.report.figures import confusion_matrix, confusion_png
from glassworks.tracking import contract as C


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


def label_name(label_names: Sequence[str], index: int) -> str:
    return str(label_names[index]) if 0 <= index < len(label_names) else str(index)


def test_results_section(record: RunRecord, label_names: list[str], predictions: TestPredictions | None,
                         prediction_error: str | None, summary: dict[str, Any]) -> Section:
    m = record.metrics
    keys = [k for k in ("test/acc", "test/f1", "test/loss", "val/acc", "val/f1", "val/loss", "train/loss") if k in m]
    blocks: list[Any] = [Table(["metric", "value"], [[k, fmt(m[k])] for k in keys], numeric={1},
                               caption="Final metrics (latest logged value)")] if keys else []
    if predictions is not None and len(predictions.y_true):
        n = max(len(label_names), int(max(predictions.y_true.max(), predictions.y_pred.max())) + 1)
        names = [label_name(label_names, i) for i in range(n)]
        matrix = confusion_matrix(predictions.y_true, predictions.y_pred, n)
        accuracy = float(np.trace(matrix) / matrix.sum())
        rows = [[f"true {names[i]}", *[str(v) for v in matrix[i]], fmt(matrix[i, i] / max(1, matrix[i].sum()))]
                for i in range(n)]
        blocks.append(Table(["", *[f"pred {x}" for x in names], "recall"], rows, numeric=set(range(1, n + 2)),
                            highlight={(i, i + 1) for i in range(n)},
                            caption=f"Confusion matrix, test split ({int(matrix.sum())} examples)"))
        blocks.append(Image("confusion_matrix.png", confusion_png(matrix, names), "confusion matrix"))
        # test/acc is torchmetrics' macro average: the mean of the recalls of the classes present,
        # which differs from the share of right answers when the classes are not the same size.
        support = matrix.sum(axis=1)
        balanced = float(np.mean(np.diag(matrix)[support > 0] / support[support > 0]))
        logged = m.get("test/acc")
        agree = logged is not None and abs(logged - balanced) <= 1.0 / matrix.sum() + 1e-6
        blocks.append(Paragraph(
            f"{predictions.source} From the matrix: {fmt(accuracy)} of the examples right; balanced accuracy "
            f"(the mean of the recalls) {fmt(balanced)}"
            + (f", which is what test/acc measures (logged: {fmt(logged)})." if logged is not None else "."),
            "note" if agree or logged is None else "warning"))
        summary["confusion_matrix"] = {"labels": names, "counts": matrix.tolist(), "accuracy": accuracy,
                                       "balanced_accuracy": balanced}
    elif prediction_error:
        blocks.append(Paragraph(f"No confusion matrix: {prediction_error}", "warning"))
    if not blocks:
        blocks.append(Paragraph("The run logged no test metrics (test=false?).", "note"))
    return Section("test", "Test results", blocks)


def _method_table(metrics: Mapping[str, float], prefix: str, columns: Sequence[C.MetricSpec],
                  baseline: str, caption: str, extra: Sequence[tuple[str, str]] = ()) -> Table | None:
    methods = list(dict.fromkeys(k.split("/")[1] for k in metrics
                                 if k.startswith(prefix) and k.count("/") == 2 and k.split("/")[1] != "agreement"))
    if not methods:
        return None
    methods = [m for m in methods if m != baseline] + ([baseline] if baseline in methods else [])
    columns = [c for c in columns if any(f"{prefix}{m}/{c.key}" in metrics for m in methods)]
    rows, highlight = [], set()
    for r, method in enumerate(methods):
        row = [method + (" (baseline)" if method == baseline else "")]
        for c, (key, _, higher) in enumerate(((s.key, s.display, s.higher_is_better) for s in columns), start=1):
            value = metrics.get(f"{prefix}{method}/{key}")
            base = metrics.get(f"{prefix}{baseline}/{key}")
            row.append(fmt(value))
            if method != baseline and value is not None and base is not None and math.isfinite(value) \
                    and math.isfinite(base) and (value > base if higher else value < base):
                highlight.add((r, c))
        for key, _ in extra:
            row.append(fmt(metrics.get(f"{prefix}{method}/{key}")))
        rows.append(row)
    headers = ["method", *[c.display for c in columns], *[e[1] for e in extra]]
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
        info = [("true label", label_name(label_names, label)),
                ("prediction", f"{label_name(label_names, prediction)} (p={fmt(float(head['model_output']))})"),
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
            order = [p for p in np.argsort(-np.nan_to_num(scores[1:], nan=-np.inf), kind="stable") + 1]
            # Only tokens that push towards the explained class: a "top" list ending in negatives misleads.
            top = [(tokens[p], fmt(scores[p], 3)) for p in order if math.isfinite(scores[p]) and scores[p] > 0]
            top = top[: options.top_tokens]
            base = mr["base_value"].iloc[0] if "base_value" in mr else float("nan")
            meta = f"explains {label_name(label_names, int(mr['target'].iloc[0]))}"
            if pd.notna(base):
                meta += f" · base value {fmt(float(base))} + Σ scores {fmt(float(base) + float(np.nansum(scores)))}"
            rows.append(TokenRow(method, tokens, scores.tolist(), rationale, top, meta))
        out.append(TokenExample(f"Test example {example_id}", info, rows, example_id))
    return out


def explain_section(record: RunRecord, label_names: list[str], options: RunReportOptions) -> Section | None:
    m = record.metrics
    if not any(k.startswith("explain/") for k in m):
        return None
    art = record.artifacts
    table = art.parquet(C.ATTRIBUTIONS) if art else None
    blocks: list[Any] = []
    n = int(table["example_id"].nunique()) if table is not None else None
    methods = [k.split("/")[1] for k in m if k.startswith("explain/") and k.endswith("/comprehensiveness")
               and k.split("/")[1] != C.EXPLAIN_BASELINE]
    blocks.append(Paragraph(
        f"{len(methods)} method{'s' if len(methods) != 1 else ''} ({', '.join(methods)}) and the {C.EXPLAIN_BASELINE} "
        "baseline (random scores: the tokens in a seeded random order)"
        + (f" on {n} test examples" if n else "")
        + " (a seeded, class-stratified sample that includes misclassified ones). Faithfulness: how much the "
        "prediction depends on the top-attributed tokens (ERASER comprehensiveness/sufficiency, AOPC); "
        f"plausibility: agreement with the planted ground-truth rationale. Green cells beat {C.EXPLAIN_BASELINE}."))
    skipped = {k.split("/")[1]: int(v) for k, v in m.items()
               if k.startswith("explain/") and k.endswith("/" + C.N_SKIPPED) and v > 0}
    if skipped:  # a method's limit (input length, budget) skipped these; its metrics cover the rest
        blocks.append(Paragraph("Skipped by a method's limit (its metrics cover the other examples): " + ", ".join(
            f"{method} {count} example{'s' if count != 1 else ''}" for method, count in sorted(skipped.items())) + ".",
            "note"))
    faith = _method_table(m, "explain/", C.EXPLAIN_METRICS, C.EXPLAIN_BASELINE,
                          f"Faithfulness and plausibility against the {C.EXPLAIN_BASELINE} baseline",
                          extra=(("seconds_per_example", "s / example"),))
    if faith:
        blocks.append(faith)
    prefix = C.metric_key(C.EXPLAIN_PREFIX, C.AGREEMENT) + "/"
    agreement = {k.removeprefix(prefix): v for k, v in m.items() if k.startswith(prefix)}
    if agreement:
        names, matrix = agreement_matrix(agreement)
        blocks.append(Table(["", *names], [[a, *[fmt(v, 2) for v in row]] for a, row in zip(names, matrix, strict=True)],
                            numeric=set(range(1, len(names) + 1)),
                            caption="Rank agreement between methods (mean Spearman ρ per example; 1 = same ranking)"))
    figures = []
    for path, name, caption in ((C.EXPLAIN_METRICS_PNG, "explain_metrics.png", "Every method against the random baseline (dashed)"),
                                (C.GLOBAL_IMPORTANCE_PNG, "global_importance.png", "Global token importance")):
        png = art.bytes(path) if art else None
        if png:
            figures.append(Image(name, png, caption, f"{caption} (artifact {path})"))
    blocks.extend(figures)  # full width each: the metric panels are wide
    if table is not None and not table.empty and options.n_examples > 0:
        blocks.append(Paragraph("Examples, every method side by side:", "text"))
        blocks.extend(_examples(record, table, label_names, options))
        shown = sorted(e.example_id for e in blocks if isinstance(e, TokenExample) and e.example_id is not None)
        blocks.append(Links("Every explained example has its own page in the run's artifacts:",
                            [("all explanations (index)", C.link(C.EXPLAIN_INDEX, C.REPORT_DIR)),
                             *[(f"example {i}", C.link(C.explain_example_page(i), C.REPORT_DIR)) for i in shown]]))
    return Section("explanations", "Explanations", blocks)


def robustness_section(record: RunRecord, label_names: list[str]) -> Section | None:
    m = record.metrics
    if not any(k.startswith("robustness/") for k in m):
        return None
    blocks: list[Any] = [Paragraph(
        "Masking each method's top-k tokens (deletion) or keeping only them (insertion), and a greedy word-"
        "substitution attack guided by the attributions. A faithful method makes the prediction fall fast "
        "(low deletion AUC, high flip rate) and needs few edits; stability is the rank correlation of its "
        f"attributions under prediction-preserving edits. Green cells beat {C.ROBUSTNESS_BASELINE}.")]
    table = _method_table(m, "robustness/", C.ROBUSTNESS_METRICS, C.ROBUSTNESS_BASELINE,
                          f"Robustness per attribution method against the {C.ROBUSTNESS_BASELINE} baseline",
                          extra=(("mean_prob_drop", "mean p drop"),))
    if table:
        blocks.append(table)
    art = record.artifacts
    figures = []
    for path, caption in ((C.CURVES_DELETION_PNG, "Deletion curves"),
                          (C.CURVES_INSERTION_PNG, "Insertion curves"),
                          (C.FLIP_RATE_PNG, "Flip rate at k")):
        png = art.bytes(path) if art else None
        if png:
            figures.append(Image(path.split("/")[-1], png, caption, f"{caption} (artifact {path})"))
    if figures:
        blocks.append(Gallery(figures))
    if art and art.bytes(C.ADVERSARIAL_HTML):
        blocks.append(Links("Every attack, token by token, in the run's artifacts:",
                            [("adversarial examples", C.link(C.ADVERSARIAL_HTML, C.REPORT_DIR))]))
    attacks = art.parquet(C.ATTACKS) if art else None
    if attacks is not None and not attacks.empty:
        hits = attacks[attacks["success"]].sort_values(["n_edits", "method", "example_id"]).head(5)
        if not hits.empty:
            rows = [[str(r.method), str(int(r.example_id)), str(int(r.n_edits)),
                     f"{fmt(r.prob_before)} → {fmt(r.prob_after)}", label_name(label_names, int(r.prediction_after)),
                     str(r.original_text), str(r.perturbed_text)] for r in hits.itertuples()]
            blocks.append(Table(["method", "example", "edits", "p(original class)", "new prediction", "original",
                                 "perturbed"], rows, numeric={1, 2},
                                caption="Successful attacks with the fewest edits (all: robustness/adversarial_examples.html)"))
    return Section("robustness", "Robustness", blocks)


def classifier_sections(record: RunRecord, label_names: list[str], predictions: TestPredictions | None,
                        prediction_error: str | None, options: RunReportOptions, summary: dict[str, Any]) -> list[Section | None]:
    """A text classifier's sections: test results with the confusion matrix, explanations, robustness."""
    return [test_results_section(record, label_names, predictions, prediction_error, summary),
            explain_section(record, label_names, options),
            robustness_section(record, label_names)]
