"""Self-contained HTML views of token attributions: one page per example, one index page.

We render ourselves instead of using ``shap.plots.text`` because that leaves class names
unescaped and pulls in scripts. The pages are the templates ``explain_example.html`` and
``explain_index.html`` of :mod:`glassworks.render` (autoescaped, one CSS and CSP in
``base.html``); this module only turns explanations into the plain data they show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from glassworks.explain.metrics import agreement_matrix
from glassworks.explain.types import ExampleInput, Explanation
from glassworks.explain.word_units import WordView, tokens_are_words, word_view
from glassworks.render import fmt, render_page
from glassworks.tracking.contract import AGREEMENT, EXPLAIN_BASELINE, EXPLAIN_METRICS, N_SKIPPED


def _label(label_names: Sequence[str], index: int | None) -> str:
    if index is None:
        return "–"
    if 0 <= index < len(label_names):
        return f"{label_names[index]} ({index})"
    return str(index)


def _method_meta(example: ExampleInput, expl: Explanation, label_names: Sequence[str],
                 view: WordView) -> list[str]:
    scores = np.asarray(expl.scores, dtype=np.float64)  # (T,)
    meta = [f"explains {_label(label_names, expl.target)}", f"model output p={fmt(expl.model_output)}"]
    if expl.base_value is not None:
        # SHAP is additive: base value + sum of token (or word) scores = model output.
        total = float(np.nansum(scores))
        meta.append(f"base value={fmt(expl.base_value)}, base + \u03a3 scores={fmt(expl.base_value + total)}")
    meta.append(f"{fmt(expl.seconds, 3)} s")
    n_bad = int(np.sum(~np.isfinite(scores)))
    if n_bad:
        meta.append(f"{n_bad} non-finite scores")
    shown = view.scores  # (1+W,) or (T,): what the row shows
    positive = [p for p in range(1, len(shown)) if np.isfinite(shown[p]) and shown[p] > 0]
    top = sorted(positive, key=lambda p: -shown[p])[:5]
    meta.append("top towards the class: " + (", ".join(f"{view.tokens[p]} ({fmt(shown[p], 3)})" for p in top)
                                              if top else "none (no positive score)"))
    return meta


def render_example_html(
    example: ExampleInput,
    explanations: Mapping[str, Explanation],
    label_names: Sequence[str],
    prediction: int,
    probabilities: Sequence[float] | np.ndarray,
    title_info: Mapping[str, Any] | None = None,
    links: Sequence[tuple[str, str]] = (),
) -> str:
    """One self-contained page: the text, the prediction, and one coloured token row per method.

    `explanations` maps method name -> that method's explanation of `example`; `probabilities`
    is the model's (C,) class distribution; `title_info` (run id, model, data, ...) is shown as a
    key/value list; `links` are (label, relative href) to the run's other pages. Colours are normalised per method (red = towards the explained class,
    blue = against); rationale tokens are underlined; the exact score is in each token's tooltip.
    When a tokenizer splits words into pieces (a pretrained encoder's wordpieces), the rows show
    [CLS] + whole words, each with the sum of its pieces' scores (:func:`word_view`; the token
    scores stay in ``attributions.parquet``).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)  # (C,)
    p_pred = float(probabilities[prediction]) if 0 <= prediction < len(probabilities) else math.nan
    info: dict[str, Any] = {
        "example id": example.example_id,
        "true label": _label(label_names, example.label),
        "prediction": f"{_label(label_names, prediction)}, p={fmt(p_pred)}",
        "tokens": len(example.tokens),
    }
    by_word = not tokens_are_words(example.word_ids)
    views = {m: (word_view(example, e.scores) if by_word else
                 WordView(list(example.tokens), np.asarray(e.scores, dtype=np.float64), example.rationale))
             for m, e in explanations.items()}  # fmt: skip
    if by_word:
        info["words"] = sum(1 for _ in {w for w in example.word_ids or [] if w is not None})
        info["view"] = "words: each word's score is the sum of its tokens' scores"
    if example.rationale is not None:
        info["rationale tokens"] = int(sum(example.rationale))
    info.update({str(k): v for k, v in (title_info or {}).items()})
    rows = [{"name": label_names[c] if c < len(label_names) else str(c), "p": float(p), "predicted": c == prediction,
             "width": max(0.0, min(100.0, float(p) * 100)) if math.isfinite(float(p)) else 0.0}
            for c, p in enumerate(probabilities)]  # fmt: skip
    methods = [{"name": m, "scores": views[m].scores.tolist(),
                "meta": _method_meta(example, e, label_names, views[m])} for m, e in explanations.items()]  # fmt: skip
    # The template rows show example.tokens / example.rationale: the word view's when by word.
    first = next(iter(views.values()), None)
    shown = replace(example, tokens=first.tokens, rationale=first.rationale) if by_word and first else example
    return render_page("explain_example.html", title=f"Example {example.example_id} — explanations",
                       example=shown, correct=prediction == example.label, info=list(info.items()),
                       probabilities=rows, methods=methods,
                       links=[(label, _page_link(href)) for label, href in links])  # fmt: skip


@dataclass
class IndexRow:
    """One explained example on the index page; `href` is relative to the index file."""

    example_id: int
    href: str
    text: str
    label: str
    prediction: str
    probability: float
    correct: bool


def _relative(href: str) -> str:
    # Links must stay inside the artifact folder: no scheme, no absolute path, no parent escape.
    if "://" in href or href.startswith(("/", "\\")) or ":" in href.split("/")[0] or ".." in href.split("/"):
        raise ValueError(f"render_index_html: link {href!r} is not a relative path inside the artifact folder")
    return href


_DISPLAY = {spec.key: spec.display for spec in EXPLAIN_METRICS}
_DISPLAY.update({"seconds_per_example": "s / example", N_SKIPPED: "skipped examples",
                 "word_rationale_auprc": "word rationale AUPRC ↑", "word_rationale_f1": "word rationale F1 ↑"})


def metric_label(name: str) -> str:
    """A metric's column header: the contract's display name, else its words (``_`` as spaces)."""
    return _DISPLAY.get(name, name.replace("_", " "))


def _page_link(href: str) -> str:
    """A link to another page of the same run's artifacts (``../report/report.html``): relative,
    no scheme, no absolute path; it may go up into a sibling artifact folder."""
    if "://" in href or href.startswith(("/", "\\")) or ":" in href.split("/")[0]:
        raise ValueError(f"page link {href!r} is not a relative path between the run's artifacts")
    return href


def _metrics_tables(metrics: Mapping[str, float], bins_note: str | None = None) -> list[dict[str, Any]]:
    per_method: dict[str, dict[str, float]] = {}
    agreement: dict[str, float] = {}
    for key, value in metrics.items():
        group, _, name = key.partition("/")
        if group == AGREEMENT:
            agreement[name] = value
        else:  # counts are whole numbers: "0", not "0.0000"
            per_method.setdefault(group, {})[name] = int(value) if name == N_SKIPPED and math.isfinite(value) else value
    order = [m for m in per_method if m != EXPLAIN_BASELINE] + [m for m in per_method if m == EXPLAIN_BASELINE]
    shown = {m: (f"{m} (baseline)" if m == EXPLAIN_BASELINE else m) for m in order}
    tables = []
    if per_method:
        names: list[str] = []
        for values in per_method.values():
            names += [n for n in values if n not in names]
        # Headline metrics first; each per-bin "<metric>_at_<pct>" family gets its own narrow table.
        headline = [n for n in names if "_at_" not in n]
        if headline:
            tables.append({"title": "Metrics per method", "corner": "method",
                           "columns": [metric_label(n) for n in headline],
                           "rows": [(shown[m], [per_method[m].get(n) for n in headline]) for m in order], "note": None})
        families = list(dict.fromkeys(n.split("_at_")[0] for n in names if "_at_" in n))
        for family in families:
            cols = [n for n in names if n.startswith(family + "_at_")]
            tables.append({"title": f"{metric_label(family).capitalize()} per bin (top p% of the tokens masked)",
                           "corner": "method", "columns": [f"{n.split('_at_', 1)[1]}%" for n in cols],
                           "rows": [(shown[m], [per_method[m].get(n) for n in cols]) for m in order],
                           "note": bins_note})
    if agreement:
        methods, matrix = agreement_matrix(agreement)
        tables.append({"title": "Rank agreement between methods (mean Spearman ρ per example)", "corner": "", "digits": 2,
                       "columns": methods, "rows": list(zip(methods, matrix, strict=True)),
                       "note": "1 = the same token ranking, 0 = unrelated, −1 = reversed; – = not measured."})
    return tables


def render_index_html(
    rows: Sequence[IndexRow],
    metrics: Mapping[str, float] | None = None,
    title_info: Mapping[str, Any] | None = None,
    images: Sequence[tuple[str, bytes]] = (),
    snippet_chars: int = 120,
    links: Sequence[tuple[str, str]] = (),
    bins_note: str | None = None,
) -> str:
    """Index page: run info, the metrics tables ("<method>/<metric>" keys; rank agreement as a
    method x method matrix), figures, and links.

    `images` are (name, PNG bytes), embedded as data URIs so the page shows them wherever it is
    opened (MLflow's artifact view loads an HTML artifact without its folder); `links` are
    (label, relative href) to the run's other pages; `bins_note` explains equal per-bin columns.
    """
    shown = [{"example_id": r.example_id, "href": _relative(r.href), "label": r.label, "prediction": r.prediction,
              "probability": r.probability, "correct": r.correct,
              "snippet": r.text if len(r.text) <= snippet_chars else r.text[: snippet_chars - 1] + "\u2026"}
             for r in rows]  # fmt: skip
    return render_page("explain_index.html", title="Explanations — index",
                       info=[(str(k), v) for k, v in (title_info or {}).items()],
                       tables=_metrics_tables(metrics or {}, bins_note), images=[(str(n), bytes(png)) for n, png in images],
                       rows=shown, links=[(label, _page_link(href)) for label, href in links])
