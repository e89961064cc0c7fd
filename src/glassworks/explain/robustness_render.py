"""Self-contained HTML page of the successful adversarial examples: original | perturbed, edits marked.

Inline CSS only, no scripts, no network resources, and a Content-Security-Policy that forbids
scripts in case an escape is ever missed. Every string that comes from data, config or a method
(tokens, texts, label names, method names, metric keys) passes through :func:`esc`, quotes
included, because token strings are arbitrary user text.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from glassworks.tracking.contract import flip_rate_key

if TYPE_CHECKING:  # the runner imports this module: avoid the cycle at import time
    from glassworks.explain.robustness import AttackRecord

_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; script-src 'none'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'")  # fmt: skip

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto;
       max-width: 80rem; padding: 0 1rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.4rem; margin-bottom: 0.3rem; }
h2 { font-size: 1.1rem; margin: 1.2rem 0 0.4rem 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.2rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { font-size: 0.85rem; color: #57606a; }
.attack { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.6rem 0.8rem; margin: 0.8rem 0; }
.meta { font-size: 0.85rem; color: #57606a; margin: 0 0 0.5rem 0; overflow-wrap: anywhere; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 0.8rem; }
.side h3 { font-size: 0.85rem; margin: 0 0 0.3rem 0; color: #57606a; }
.tokens { display: flex; flex-wrap: wrap; gap: 3px; align-items: baseline; background: #f6f8fa;
          padding: 0.4rem; border-radius: 6px; }
.tok { padding: 1px 3px; border-radius: 3px; font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
       font-size: 0.9rem; white-space: pre; max-width: 100%; overflow-wrap: anywhere; }
.tok.old { background: rgba(31,119,180,0.25); text-decoration: line-through; }
.tok.new { background: rgba(214,39,40,0.30); font-weight: 600; }
"""

SUMMARY_COLUMNS = (
    ("attack_success", "attack success \u2191"),
    ("mean_edits", "mean edits (successes) \u2193"),
    ("mean_prob_drop", "mean p drop \u2191"),
    ("model_calls_per_attack", "forward passes / attack"),
    ("deletion_auc", "deletion AUC \u2193"),
    ("insertion_auc", "insertion AUC \u2191"),
    (flip_rate_key(1), "flip rate @1 \u2191"),
    ("stability", "stability \u2191"),
)


def esc(value: Any) -> str:
    """HTML-escape anything (``str()`` first), quotes included: safe in text and attribute values."""
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return esc(value)
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}g}"


def _label(label_names: Sequence[str], index: int) -> str:
    return f"{label_names[index]} ({index})" if 0 <= index < len(label_names) else str(index)


def _tokens(ids: Sequence[int], edited: set[int], css: str, id_to_token: Callable[[int], str]) -> str:
    spans = []
    for pos in range(1, len(ids)):  # [CLS] is never edited and is not part of the text
        token = str(id_to_token(int(ids[pos])))
        shown = token if token != "" else "\u2205"
        cls = f"tok {css}" if pos in edited else "tok"
        title = f' title="position {pos}"' if pos in edited else ""
        spans.append(f'<span class="{cls}"{title}>{esc(shown)}</span>')
    return '<div class="tokens">' + "".join(spans) + "</div>"


def _summary(methods: Sequence[str], metrics: Mapping[str, float]) -> str:
    head = "".join(f"<th>{esc(title)}</th>" for _, title in SUMMARY_COLUMNS)
    rows = []
    for m in methods:
        cells = "".join(f'<td class="num">{_fmt(metrics.get(f"{m}/{key}", math.nan))}</td>' for key, _ in SUMMARY_COLUMNS)
        rows.append(f"<tr><th>{esc(m)}</th>{cells}</tr>")
    return f"<table><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"


def _attack(r: AttackRecord, id_to_token: Callable[[int], str], label_names: Sequence[str]) -> str:
    edited = set(r.edited_positions)
    changes = ", ".join(
        f"#{p}: {id_to_token(int(r.original_ids[p]))} \u2192 {id_to_token(int(r.perturbed_ids[p]))}" for p in r.edited_positions
    )
    meta = (
        f"{_label(label_names, r.target)} \u2192 {_label(label_names, r.prediction_after)} \u00b7 "
        f"p({_label(label_names, r.target)}) {r.prob_before:.4f} \u2192 {r.prob_after:.4f} \u00b7 "
        f"{r.n_edits} edit(s), {r.n_model_calls} forward pass(es) \u00b7 {changes}"
    )
    return (
        f'<section class="attack"><h2>{esc(r.method)} \u00b7 example {esc(r.example_id)}</h2>'
        f'<p class="meta">{esc(meta)}</p><div class="pair">'
        f'<div class="side"><h3>original</h3>{_tokens(r.original_ids, edited, "old", id_to_token)}</div>'
        f'<div class="side"><h3>perturbed</h3>{_tokens(r.perturbed_ids, edited, "new", id_to_token)}</div>'
        "</div></section>"
    )


def render_adversarial_html(
    records: Sequence[AttackRecord],
    id_to_token: Callable[[int], str],
    label_names: Sequence[str],
    metrics: Mapping[str, float],
    max_examples: int = 200,
    title: str = "Adversarial examples",
) -> str:
    """The page: a per-method summary table, then every successful attack (fewest edits first,
    at most `max_examples`), original and perturbed tokens side by side with the edits marked."""
    methods = list(dict.fromkeys(r.method for r in records))
    wins = sorted((r for r in records if r.success), key=lambda r: (methods.index(r.method), r.n_edits, r.example_id))
    counts = Counter(r.method for r in wins)
    shown = wins[: max(0, int(max_examples))]
    parts = [
        f"<h1>{esc(title)}</h1>",
        '<p class="note">Greedy word substitution guided by each attribution method; a successful attack '
        "flips the model's prediction within the edit budget. <code>random_order</code> visits positions in a "
        "random order (the chance baseline). Edited tokens are struck through on the left and bold on the right.</p>",
        _summary(methods, metrics),
        f'<p class="note">{esc(len(wins))} successful attack(s) of {esc(len(records))}; '
        + esc(", ".join(f"{m}: {counts.get(m, 0)}" for m in methods))
        + (f"; showing the first {esc(len(shown))}" if len(shown) < len(wins) else "")
        + "</p>",
    ]
    parts += [_attack(r, id_to_token, label_names) for r in shown]
    if not wins:
        parts.append('<p class="note">No attack succeeded.</p>')
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(_CSP)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
