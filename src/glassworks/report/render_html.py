"""One self-contained HTML file: inline CSS, images as base64 data URIs, no scripts, no network.

Every string that reaches the page goes through :func:`esc` (``html.escape(quote=True)``), in
text and in attribute values alike; a Content-Security-Policy that forbids scripts and remote
resources is a second line of defence should an escape ever be missed.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from glassworks.explain.render import esc, token_colour
from glassworks.report.document import (
    Code, Details, Document, Gallery, Headline, Image, KeyValues, Paragraph, Table, TokenExample, TokenRow,
)  # fmt: skip

CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'"
)

CSS = """
:root { --fg: #1f2328; --muted: #57606a; --line: #d0d7de; --soft: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0; line-height: 1.45; background: #fff; }
header { background: #24292f; color: #fff; padding: 1.2rem 2rem 1rem 2rem; }
header h1 { margin: 0 0 0.2rem 0; font-size: 1.5rem; overflow-wrap: anywhere; }
header p { margin: 0; color: #d0d7de; font-size: 0.9rem; overflow-wrap: anywhere; }
nav { background: var(--soft); border-bottom: 1px solid var(--line); padding: 0.45rem 2rem;
      font-size: 0.88rem; }
nav a { color: var(--accent); text-decoration: none; margin-right: 1.1rem; white-space: nowrap; }
main { max-width: 78rem; margin: 0 auto; padding: 0.5rem 2rem 3rem 2rem; }
section { border-bottom: 1px solid var(--line); padding: 0.6rem 0 1rem 0; }
h2 { font-size: 1.2rem; margin: 0.9rem 0 0.5rem 0; }
h3 { font-size: 1rem; margin: 0.9rem 0 0.4rem 0; }
table { border-collapse: collapse; margin: 0.3rem 0 0.9rem 0; font-size: 0.86rem; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0.2rem 0; color: var(--fg);
          white-space: nowrap; }
th, td { border: 1px solid var(--line); padding: 0.2rem 0.55rem; text-align: left; vertical-align: top;
         overflow-wrap: break-word; max-width: 40rem; }
th { background: var(--soft); font-weight: 600; }
tr:nth-child(even) td { background: #fbfcfd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.hl { font-weight: 700; background: #dafbe1 !important; }
.scroll { overflow-x: auto; max-width: 100%; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1.2rem; margin: 0.3rem 0 0.9rem 0;
        font-size: 0.9rem; }
dl.kv dt { font-weight: 600; color: var(--muted); }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.cards { display: flex; flex-wrap: wrap; gap: 0.7rem; margin: 1rem 0 0.4rem 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 0.55rem 0.9rem; min-width: 9rem;
        background: var(--soft); }
.card .label { font-size: 0.78rem; color: var(--muted); text-transform: uppercase; letter-spacing: 0.03em; }
.card .value { font-size: 1.35rem; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .hint { font-size: 0.75rem; color: var(--muted); }
p.note { color: var(--muted); font-size: 0.88rem; }
p.warning { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 0.4rem 0.7rem;
            font-size: 0.9rem; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 0.6rem 0.8rem;
      overflow-x: auto; font-size: 0.82rem; white-space: pre-wrap; overflow-wrap: anywhere; }
details { margin: 0.4rem 0 0.8rem 0; }
summary { cursor: pointer; color: var(--accent); font-size: 0.9rem; }
figure { margin: 0.5rem 0 1rem 0; }
figure img { max-width: 100%; border: 1px solid var(--line); border-radius: 4px; }
figcaption { font-size: 0.82rem; color: var(--muted); }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8rem; align-items: flex-start; }
.gallery figure { flex: 1 1 22rem; max-width: 100%; margin: 0.3rem 0; }
.example { border: 1px solid var(--line); border-radius: 8px; padding: 0.5rem 0.8rem; margin: 0.8rem 0; }
.example h3 { margin-top: 0.2rem; }
.attr { display: grid; grid-template-columns: 9rem 1fr; gap: 0.35rem 0.8rem; align-items: baseline; }
.attr .method { font-weight: 600; font-size: 0.88rem; overflow-wrap: anywhere; }
.attr .meta { grid-column: 2; font-size: 0.78rem; color: var(--muted); margin-top: -0.2rem; }
.tokens { display: flex; flex-wrap: wrap; gap: 3px; }
.tok { padding: 0 3px; border-radius: 3px; font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
       font-size: 0.84rem; border: 1px solid #eaeef2; white-space: pre; max-width: 100%; overflow-wrap: anywhere; }
.tok.special { color: #8c959f; font-style: italic; }
.tok.rationale { text-decoration: underline; text-decoration-thickness: 2px; text-underline-offset: 3px; }
.legend { font-size: 0.8rem; color: var(--muted); }
.swatch { display: inline-block; width: 1.4rem; height: 0.75rem; vertical-align: middle; border-radius: 2px; }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(block: Table) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in block.columns)
    body = []
    for r, row in enumerate(block.rows):
        cells = []
        for c, value in enumerate(row):
            classes = [name for name, on in (("num", c in block.numeric), ("hl", (r, c) in block.highlight)) if on]
            attr = f" class=\"{' '.join(classes)}\"" if classes else ""
            cells.append(f"<td{attr}>{esc(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>{esc(block.caption)}</caption>" if block.caption else ""
    return f"<div class=\"scroll\"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _tokens(row: TokenRow) -> str:
    scores = np.asarray(row.scores, dtype=np.float64)  # (T,)
    body = scores[1:][np.isfinite(scores[1:])]
    # [CLS] is left out of the colour scale: attention methods often put most mass there.
    scale = float(np.max(np.abs(body))) if body.size else 0.0
    spans = []
    for pos, token in enumerate(row.tokens):
        score = float(scores[pos]) if pos < len(scores) else math.nan
        classes = ["tok"] + (["special"] if pos == 0 else [])
        in_rationale = bool(row.rationale and pos < len(row.rationale) and row.rationale[pos])
        if in_rationale:
            classes.append("rationale")
        style = ""
        if math.isfinite(score):
            background, colour = token_colour(score, scale)
            style = f" style=\"background:{background};color:{colour}\""
        tip = f"{row.method} #{pos} {token}: {score:.4g}" + (" (rationale)" if in_rationale else "")
        spans.append(f"<span class=\"{' '.join(classes)}\"{style} title=\"{esc(tip)}\">{esc(token or '∅')}</span>")
    return "<div class=\"tokens\">" + "".join(spans) + "</div>"


def _example(block: TokenExample) -> str:
    info = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in block.info)
    rows = []
    for row in block.rows:
        top = ", ".join(f"{token} {score}" for token, score in row.top)
        meta = " · ".join(part for part in (f"top: {top}" if top else "", row.meta) if part)
        rows.append(f"<div class=\"method\">{esc(row.method)}</div>{_tokens(row)}<div class=\"meta\">{esc(meta)}</div>")
    return (f"<div class=\"example\"><h3>{esc(block.title)}</h3><dl class=\"kv\">{info}</dl>"
            f"<div class=\"attr\">{''.join(rows)}</div></div>")


def _legend() -> str:
    pos, _ = token_colour(1.0, 1.0)
    neg, _ = token_colour(-1.0, 1.0)
    return (f"<p class=\"legend\"><span class=\"swatch\" style=\"background:{pos}\"></span> towards the predicted "
            f"class <span class=\"swatch\" style=\"background:{neg}\"></span> against it · colours scaled per "
            "method to its largest |score| without [CLS] · <span class=\"tok rationale\">underlined</span> = "
            "ground-truth rationale · hover a token for its score</p>")


def block_html(block: Any) -> str:
    if isinstance(block, Paragraph):
        return f"<p class=\"{esc(block.kind)}\">{esc(block.text)}</p>"
    if isinstance(block, KeyValues):
        return "<dl class=\"kv\">" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in block.items) + "</dl>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Image):
        caption = f"<figcaption>{esc(block.caption)}</figcaption>" if block.caption else ""
        return f"<figure><img src=\"{_data_uri(block.png)}\" alt=\"{esc(block.alt)}\">{caption}</figure>"
    if isinstance(block, Gallery):
        return "<div class=\"gallery\">" + "".join(block_html(image) for image in block.images) + "</div>"
    if isinstance(block, Code):
        return f"<pre><code>{esc(block.text)}</code></pre>"
    if isinstance(block, Details):
        return f"<details><summary>{esc(block.summary)}</summary>{block_html(block.block)}</details>"
    if isinstance(block, Headline):
        cards = "".join(
            f"<div class=\"card\"><div class=\"label\">{esc(m.label)}</div><div class=\"value\">{esc(m.value)}</div>"
            + (f"<div class=\"hint\">{esc(m.hint)}</div>" if m.hint else "") + "</div>"
            for m in block.metrics
        )
        return f"<div class=\"cards\">{cards}</div>"
    if isinstance(block, TokenExample):
        return _example(block)
    raise TypeError(f"render_html: unknown block type {type(block).__name__}")


def render_html(doc: Document) -> str:
    nav = "".join(f"<a href=\"#{esc(s.anchor)}\">{esc(s.title)}</a>" for s in doc.sections)
    parts = []
    for section in doc.sections:
        blocks = "\n".join(block_html(b) for b in section.blocks)
        if any(isinstance(b, TokenExample) for b in section.blocks):
            blocks = blocks.replace("<div class=\"example\">", _legend() + "<div class=\"example\">", 1)
        parts.append(f"<section id=\"{esc(section.anchor)}\"><h2>{esc(section.title)}</h2>\n{blocks}\n</section>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{esc(CSP)}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(doc.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(doc.title)}</h1><p>{esc(doc.subtitle)}</p></header>\n"
        f"<nav>{nav}</nav>\n<main>\n" + "\n".join(parts) + "\n</main>\n</body>\n</html>\n"
    )
