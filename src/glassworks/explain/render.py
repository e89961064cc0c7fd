"""Self-contained HTML views of token attributions: one page per example, one index page.

We render ourselves instead of using ``shap.plots.text`` because that leaves class names
unescaped and pulls in scripts. Pages here have inline CSS only, no scripts, no network
resources, and a Content-Security-Policy that forbids scripts in case an escape is ever missed.
Every string that comes from data, config or a method (tokens, texts, label names, method names,
title values) passes through :func:`esc` — attribute values included.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from glassworks.explain.types import ExampleInput, Explanation

# Diverging scale: red pushes towards the explained class, blue away from it.
_POS_RGB = (214, 39, 40)
_NEG_RGB = (31, 119, 180)
_MAX_ALPHA = 0.85

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: file:; "
    "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'"
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto;
       max-width: 72rem; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.4rem; margin-bottom: 0.3rem; }
h2 { font-size: 1.05rem; margin: 0 0 0.4rem 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.2rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.info { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1rem; margin: 0.5rem 0 1rem 0; }
dl.info dt { font-weight: 600; }
dl.info dd { margin: 0; overflow-wrap: anywhere; }
.ok { color: #1a7f37; font-weight: 600; }
.wrong { color: #cf222e; font-weight: 600; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa; padding: 0.6rem;
        border-radius: 6px; }
.method { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.6rem 0.8rem; margin: 0.8rem 0; }
.meta { font-size: 0.85rem; color: #57606a; margin: 0 0 0.5rem 0; }
.tokens { display: flex; flex-wrap: wrap; gap: 3px; align-items: baseline; }
.tok { padding: 1px 3px; border-radius: 3px; font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
       font-size: 0.9rem; white-space: pre; max-width: 100%; overflow-wrap: anywhere; border: 1px solid #eaeef2; }
.tok.special { color: #8c959f; font-style: italic; }
.tok.rationale { text-decoration: underline; text-decoration-thickness: 2px; text-underline-offset: 3px; }
.tok.nan { background: #eaeef2; color: #8c959f; }
.bar { display: inline-block; height: 0.7rem; background: #8c959f; vertical-align: middle; }
.bar.pred { background: #d62728; }
.legend { font-size: 0.85rem; color: #57606a; }
.swatch { display: inline-block; width: 1.6rem; height: 0.8rem; vertical-align: middle; border-radius: 2px; }
.scroll { overflow-x: auto; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: 0.4rem 0; }
"""


def esc(value: Any) -> str:
    """HTML-escape anything (``str()`` first), quotes included, so it is safe in text and attributes."""
    return html.escape(str(value), quote=True)


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.{digits}g}"


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{esc(_CSP)}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _label(label_names: Sequence[str], index: int | None) -> str:
    if index is None:
        return "–"
    if 0 <= index < len(label_names):
        return f"{label_names[index]} ({index})"
    return str(index)


def _info(items: Mapping[str, Any]) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items.items())
    return f"<dl class=\"info\">{rows}</dl>"


def token_colour(value: float, scale: float) -> tuple[str, str]:
    """(background, text colour) CSS for a score normalised by the method's max |score|."""
    v = max(-1.0, min(1.0, value / scale)) if scale > 0 else 0.0
    r, g, b = _POS_RGB if v >= 0 else _NEG_RGB
    alpha = abs(v) * _MAX_ALPHA
    text = "#ffffff" if alpha > 0.55 else "#1f2328"
    return f"rgba({r},{g},{b},{alpha:.3f})", text


def _tokens_html(example: ExampleInput, expl: Explanation) -> str:
    scores = np.asarray(expl.scores, dtype=np.float64)  # (T,)
    body = scores[1:][np.isfinite(scores[1:])]
    # [CLS] is left out of the scale: attention methods often put most mass there.
    scale = float(np.max(np.abs(body))) if body.size else 0.0
    rationale = example.rationale or []
    spans = []
    for pos, token in enumerate(example.tokens):
        score = float(scores[pos]) if pos < len(scores) else math.nan
        classes = ["tok"]
        if pos == 0:
            classes.append("special")
        if pos < len(rationale) and rationale[pos]:
            classes.append("rationale")
        tooltip = f"{expl.method} | #{pos} {token} | score={_fmt(score)}"
        if pos < len(rationale) and rationale[pos]:
            tooltip += " | rationale"
        if math.isfinite(score):
            background, colour = token_colour(score, scale)
            style = f" style=\"background:{background};color:{colour}\""
        else:
            classes.append("nan")
            style = ""
        shown = token if token != "" else "\u2205"
        spans.append(f"<span class=\"{' '.join(classes)}\"{style} title=\"{esc(tooltip)}\">{esc(shown)}</span>")
    return "<div class=\"tokens\">" + "".join(spans) + "</div>"


def _method_html(example: ExampleInput, expl: Explanation, label_names: Sequence[str]) -> str:
    scores = np.asarray(expl.scores, dtype=np.float64)
    meta = [f"explains {esc(_label(label_names, expl.target))}", f"model output p={_fmt(expl.model_output)}"]
    if expl.base_value is not None:
        # SHAP is additive: base value + sum of token scores = model output.
        total = float(np.nansum(scores))
        meta.append(f"base value={_fmt(expl.base_value)}, base + \u03a3 scores={_fmt(expl.base_value + total)}")
    meta.append(f"{_fmt(expl.seconds, 3)} s")
    n_bad = int(np.sum(~np.isfinite(scores)))
    if n_bad:
        meta.append(f"{n_bad} non-finite scores")
    finite_pos = [p for p in range(1, len(scores)) if np.isfinite(scores[p])]
    top = sorted(finite_pos, key=lambda p: -scores[p])[:5]
    if top:
        meta.append("top: " + ", ".join(f"{esc(example.tokens[p])} ({_fmt(scores[p], 3)})" for p in top))
    return (
        f"<section class=\"method\"><h2>{esc(expl.method)}</h2>"
        f"<p class=\"meta\">{' · '.join(meta)}</p>{_tokens_html(example, expl)}</section>"
    )


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
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)  # (C,)
    correct = prediction == example.label
    p_pred = float(probabilities[prediction]) if 0 <= prediction < len(probabilities) else math.nan
    verdict = "<span class=\"ok\">correct</span>" if correct else "<span class=\"wrong\">misclassified</span>"
    info = {
        "example id": example.example_id,
        "true label": _label(label_names, example.label),
        "prediction": f"{_label(label_names, prediction)}, p={_fmt(p_pred)}",
        "tokens": len(example.tokens),
    }
    if example.rationale is not None:
        info["rationale tokens"] = int(sum(example.rationale))
    info.update({str(k): v for k, v in (title_info or {}).items()})

    prob_rows = []
    for c, p in enumerate(probabilities):
        name = label_names[c] if c < len(label_names) else str(c)
        width = max(0.0, min(100.0, float(p) * 100)) if math.isfinite(float(p)) else 0.0
        bar_cls = "bar pred" if c == prediction else "bar"
        prob_rows.append(
            f"<tr><td>{esc(name)}</td><td class=\"num\">{_fmt(p)}</td>"
            f"<td><span class=\"{bar_cls}\" style=\"width:{width * 2:.1f}px\"></span></td></tr>"
        )
    pos_bg, _ = token_colour(1.0, 1.0)
    neg_bg, _ = token_colour(-1.0, 1.0)
    legend = (
        "<p class=\"legend\">"
        f"<span class=\"swatch\" style=\"background:{pos_bg}\"></span> towards the explained class "
        f"<span class=\"swatch\" style=\"background:{neg_bg}\"></span> against it · "
        "colours are scaled per method to its largest |score| (without [CLS]) · "
        "<span class=\"tok rationale\">underlined</span> = rationale token · hover a token for its score</p>"
    )
    methods = "".join(_method_html(example, explanations[m], label_names) for m in explanations)
    body = (
        f"<h1>Example {esc(example.example_id)} — {verdict}</h1>\n{_info(info)}\n"
        f"<div class=\"text\">{esc(example.text)}</div>\n"
        "<h2>Class probabilities</h2>\n<table><tr><th>class</th><th>p</th><th></th></tr>"
        + "".join(prob_rows)
        + f"</table>\n<h2>Attributions</h2>\n{legend}\n{methods}"
    )
    return _page(f"Example {example.example_id} — explanations", body)


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
    return esc(href)


def _metrics_tables(metrics: Mapping[str, float]) -> str:
    per_method: dict[str, dict[str, float]] = {}
    agreement: dict[str, float] = {}
    for key, value in metrics.items():
        group, _, name = key.partition("/")
        if group == "agreement":
            agreement[name] = value
        else:
            per_method.setdefault(group, {})[name] = value
    out = []
    if per_method:
        names: list[str] = []
        for values in per_method.values():
            names += [n for n in values if n not in names]
        # Headline metrics first; the per-bin "_at_<pct>" curves get their own table so neither is too wide.
        headline = [n for n in names if "_at_" not in n]
        per_bin = [n for n in names if "_at_" in n]
        for title, cols in (("Metrics per method", headline), ("Faithfulness per bin (% of tokens)", per_bin)):
            if not cols:
                continue
            head = "".join(f"<th>{esc(n)}</th>" for n in cols)
            rows = "".join(
                f"<tr><th>{esc(m)}</th>" + "".join(f"<td class=\"num\">{_fmt(v.get(n))}</td>" for n in cols) + "</tr>"
                for m, v in per_method.items()
            )
            table = f"<table><tr><th>method</th>{head}</tr>{rows}</table>"
            out.append(f"<h2>{esc(title)}</h2>\n<div class=\"scroll\">{table}</div>")
    if agreement:
        rows = "".join(f"<tr><td>{esc(k)}</td><td class=\"num\">{_fmt(v)}</td></tr>" for k, v in agreement.items())
        out.append(
            f"<h2>Rank agreement (mean Spearman)</h2>\n<table><tr><th>pair</th><th>\u03c1</th></tr>{rows}</table>"
        )
    return "\n".join(out)


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
    parts = ["<h1>Explanations</h1>"]
    if title_info:
        parts.append(_info({str(k): v for k, v in title_info.items()}))
    if metrics:
        parts.append(_metrics_tables(metrics))
    for src in images:
        parts.append(f"<img src=\"{_relative(src)}\" alt=\"{esc(src)}\">")
    table = []
    for row in rows:
        snippet = row.text if len(row.text) <= snippet_chars else row.text[: snippet_chars - 1] + "\u2026"
        verdict = "<span class=\"ok\">\u2713</span>" if row.correct else "<span class=\"wrong\">\u2717</span>"
        table.append(
            f"<tr><td><a href=\"{_relative(row.href)}\">{esc(row.example_id)}</a></td>"
            f"<td>{esc(row.label)}</td><td>{esc(row.prediction)}</td>"
            f"<td class=\"num\">{_fmt(row.probability)}</td><td>{verdict}</td><td>{esc(snippet)}</td></tr>"
        )
    parts.append(
        f"<h2>Examples ({len(rows)})</h2>\n<table><tr><th>id</th><th>label</th><th>prediction</th>"
        "<th>p</th><th></th><th>text</th></tr>" + "".join(table) + "</table>"
    )
    return _page("Explanations — index", "\n".join(parts))
