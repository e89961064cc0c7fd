"""A causal LM's report sections (``LMTask.report_sections``): answer accuracy and perplexity
(with the validation curve), the gold-evidence and faithfulness scores per attribution method
against the random baseline, deletion curves, and a few generated examples with their
attribution heatmaps. Metric names and directions come from the run contract."""

from __future__ import annotations

from typing import Any

from glassworks.render.png import png_bytes
from glassworks.render.style import figure_style, new_figure
from glassworks.report.document import Gallery, Image, Paragraph, Section, Table, fmt
from glassworks.tracking import contract as C

GENERATION_KEYS = ("test/answer_acc", "test/perplexity", "test/loss", "val/answer_acc", "val/perplexity",
                   "val/loss", "train/loss")
N_PREDICTION_ROWS = 8


def _curve_png(history: list[tuple[int, float]], key: str) -> bytes:
    with figure_style():
        fig = new_figure(4.6, 3.2)
        ax = fig.subplots()
        ax.plot([s for s, _ in history], [v for _, v in history], marker="o")
        ax.set_xlabel("step")
        ax.set_title(key)
        return png_bytes(fig)


def _method_table(metrics: dict[str, float], prefix: str, specs: tuple[C.MetricSpec, ...], caption: str) -> Table | None:
    methods = sorted({k.split("/")[1] for k in metrics if k.startswith(prefix + "/") and k.count("/") == 2})
    if not methods:
        return None
    rows = [[m, *[fmt(metrics[f"{prefix}/{m}/{s.key}"]) if f"{prefix}/{m}/{s.key}" in metrics else "" for s in specs]]
            for m in methods]
    return Table(["method", *[s.display for s in specs]], rows, caption=caption, numeric=set(range(1, len(specs) + 1)))


def lm_sections(record: Any, predictions: Any, prediction_error: str | None, options: Any,
                summary: dict[str, Any]) -> list[Section]:
    m = record.metrics
    results: list[Any] = [Table(["metric", "value"], [[k, fmt(m[k])] for k in GENERATION_KEYS if k in m],
                                numeric={1}, caption="Generation metrics (answer accuracy: exact match of the greedy answer)")]
    if record.histories.get("val/perplexity"):
        results.append(Image("val_perplexity.png", _curve_png(record.histories["val/perplexity"], "val/perplexity"),
                             "validation perplexity per epoch"))
    if predictions is not None and len(predictions.y_true):
        rows = [[str(t), str(p), "yes" if t == p else "no"]
                for t, p in list(zip(predictions.y_true, predictions.y_pred))[:N_PREDICTION_ROWS]]
        results.append(Table(["reference", "generated", "exact"], rows, caption=predictions.source))
    elif prediction_error:
        results.append(Paragraph(f"Test generations not shown: {prediction_error}", "note"))
    sections = [Section("generation", "Generation results", results)]

    explain_blocks: list[Any] = []
    table = _method_table(m, C.EXPLAIN_PREFIX, C.GENERATION_EXPLAIN_METRICS,
                          f"Attribution of each generated token vs the gold evidence (baseline: {C.EXPLAIN_BASELINE})")
    if table is not None:
        explain_blocks.append(table)
        shap, rand = m.get(f"{C.EXPLAIN_PREFIX}/shap/hit_at_1"), m.get(f"{C.EXPLAIN_PREFIX}/{C.EXPLAIN_BASELINE}/hit_at_1")
        if shap is not None and rand:
            explain_blocks.append(Paragraph(f"SHAP hit@1 is {shap / rand:.2f}x the random baseline's."))
    art = record.artifacts
    images = []
    explained = art.parquet(C.ATTRIBUTIONS) if art is not None else None
    if explained is not None and "example" in explained.columns:
        for i in sorted(explained["example"].unique().tolist()):
            path = f"{C.GENERATION_HEATMAPS_DIR}/example_{i}.png"
            if len(images) < options.n_examples and art.exists(path):
                images.append(Image(f"lm_example_{i}.png", art.bytes(path), f"example {i}",
                                    f"example {i}: generated tokens x source tokens, gold boxed"))
    if images:
        explain_blocks.append(Gallery(images))
    if explain_blocks:
        sections.append(Section("explanations", "Explanations per generated token", explain_blocks))
    robust = _method_table(m, C.ROBUSTNESS_PREFIX, C.GENERATION_ROBUSTNESS_METRICS,
                           "Deletion curves: the generated token's probability as top positions are masked")
    if robust is not None:
        sections.append(Section("robustness", "Robustness: deletion curves", [robust]))
    return sections
