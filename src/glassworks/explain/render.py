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

from glassworks.explain.types import ExampleInput, Explanation
from glassworks.explain.word_units import WordView, tokens_are_words, word_view
from glassworks.render import fmt, render_page


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
    finite_pos = [p for p in range(1, len(shown)) if np.isfinite(shown[p])]
    top = sorted(finite_pos, key=lambda p: -shown[p])[:5]
    if top:
        meta.append("top: " + ", ".join(f"{view.tokens[p]} ({fmt(shown[p], 3)})" for p in top))
    return meta


def render_example_html(
    example: ExampleInput,
    explanations: Mapping[str, Explanation],
    label_names: Sequence[str],
    prediction: int,
    probabilities: Sequence[float] | np.ndarray,
    title_info: Mapping[str, Any] | None = None,
) -> str:
    """One self-contained page: the text, the prediction, and one coloured token row per method.

    `explanations` maps method name -> that method's explanation of `example`; `probabilities`
    is the model's (C,) class distribution; `title_info` (run id, model, data, ...) is shown as a
    key/value list. Colours are normalised per method (red = towards the explained class,
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
                       probabilities=rows, methods=methods)  # fmt: skip


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


def _metrics_tables(metrics: Mapping[str, float]) -> list[dict[str, Any]]:
    per_method: dict[str, dict[str, float]] = {}
    agreement: dict[str, float] = {}
    for key, value in metrics.items():
        group, _, name = key.partition("/")
        if group == "agreement":
            agreement[name] = value
        else:
            per_method.setdefault(group, {})[name] = value
    tables = []
    if per_method:
        names: list[str] = []
        for values in per_method.values():
            names += [n for n in values if n not in names]
        # Headline metrics first; the per-bin "_at_<pct>" curves get their own table so neither is too wide.
        headline = [n for n in names if "_at_" not in n]
        per_bin = [n for n in names if "_at_" in n]
        for title, cols in (("Metrics per method", headline), ("Faithfulness per bin (% of tokens)", per_bin)):
            if cols:
                rows = [(m, [v.get(n) for n in cols]) for m, v in per_method.items()]
                tables.append({"title": title, "corner": "method", "columns": cols, "rows": rows})
    if agreement:
        tables.append({"title": "Rank agreement (mean Spearman)", "corner": "pair", "columns": ["\u03c1"],
                       "rows": [(k, [v]) for k, v in agreement.items()]})  # fmt: skip
    return tables


def render_index_html(
    rows: Sequence[IndexRow],
    metrics: Mapping[str, float] | None = None,
    title_info: Mapping[str, Any] | None = None,
    images: Sequence[str] = (),
    snippet_chars: int = 120,
) -> str:
    """Index page: run info, the metrics table ("<method>/<metric>" keys), figures, and links.

    `images` are relative paths of PNGs shown inline (next to the index file).
    """
    shown = [{"example_id": r.example_id, "href": _relative(r.href), "label": r.label, "prediction": r.prediction,
              "probability": r.probability, "correct": r.correct,
              "snippet": r.text if len(r.text) <= snippet_chars else r.text[: snippet_chars - 1] + "\u2026"}
             for r in rows]  # fmt: skip
    return render_page("explain_index.html", title="Explanations — index",
                       info=[(str(k), v) for k, v in (title_info or {}).items()],
                       tables=_metrics_tables(metrics or {}), images=[_relative(s) for s in images], rows=shown)
