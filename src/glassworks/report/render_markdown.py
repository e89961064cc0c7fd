"""The same report as Markdown, with images as PNG files next to it.

Markdown renderers pass raw HTML through, so text from data or config is HTML-escaped first and
then has Markdown's own syntax characters backslash-escaped; table cells also escape ``|`` and
fold newlines. Code blocks use a fence longer than any backtick run inside them.
"""

from __future__ import annotations

import html
import re
from typing import Any

from glassworks.report.document import (
    Code, Details, Document, Gallery, Headline, Image, KeyValues, Links, Paragraph, Table, TokenExample,
)  # fmt: skip

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_LINE_START = re.compile(r"^(\s*)([#>+-]|\d+[.)])")
_ANCHOR = re.compile(r"^[a-z0-9-]+$")


def md(text: Any) -> str:
    """Inline text safe in Markdown and in tables: no raw HTML, no markup, one line."""
    escaped = html.escape(str(text), quote=False)
    escaped = _MD_SPECIAL.sub(r"\\\1", escaped)
    return " ".join(escaped.splitlines()) if "\n" in escaped or "\r" in escaped else escaped


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _table(block: Table) -> str:
    lines = []
    if block.caption:
        lines += [f"**{md(block.caption)}**", ""]
    lines.append("| " + " | ".join(md(c) for c in block.columns) + " |")
    lines.append("|" + "|".join("---:" if i in block.numeric else "---" for i in range(len(block.columns))) + "|")
    for r, row in enumerate(block.rows):
        cells = [f"**{md(v)}**" if (r, c) in block.highlight else md(v) for c, v in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _example(block: TokenExample) -> str:
    lines = [f"#### {md(block.title)}", ""]
    lines += [f"- **{md(k)}**: {md(v)}" for k, v in block.info]
    lines += ["", "| method | top tokens towards the class (score) | |", "|---|---|---|"]
    for row in block.rows:
        top = ", ".join(f"{token} {score}" for token, score in row.top) or "none positive"
        lines.append(f"| {md(row.method)} | {md(top)} | {md(row.meta)} |")
    tokens = block.rows[0].tokens if block.rows else []
    if tokens:
        lines += ["", "Tokens: " + md(" ".join(tokens))]
    return "\n".join(lines)


def block_markdown(block: Any, image_dir: str) -> str:
    if isinstance(block, Paragraph):
        # A paragraph starting with "#", "-", "1." would turn into a heading or a list.
        text = _LINE_START.sub(r"\1\\\2", md(block.text))
        return f"> **Warning:** {text}" if block.kind == "warning" else (f"*{text}*" if block.kind == "note" else text)
    if isinstance(block, Links):  # hrefs are contract paths ([A-Za-z0-9_./-]), checked by Links
        return md(block.text) + " " + " · ".join(f"[{md(label)}]({href})" for label, href in block.items)
    if isinstance(block, KeyValues):
        return "\n".join(f"- **{md(k)}**: {md(v)}" for k, v in block.items)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Image):
        caption = f"\n\n*{md(block.caption)}*" if block.caption else ""
        # File names are ours ([a-z0-9_.-]), never from data.
        return f"![{md(block.alt)}]({image_dir}/{block.name}){caption}"
    if isinstance(block, Gallery):
        return "\n\n".join(block_markdown(image, image_dir) for image in block.images)
    if isinstance(block, Code):
        fence = _fence(block.text)
        return f"{fence}{block.language}\n{block.text.rstrip()}\n{fence}"
    if isinstance(block, Details):
        return f"**{md(block.summary)}**\n\n{block_markdown(block.block, image_dir)}"
    if isinstance(block, Headline):
        head = "| " + " | ".join(md(m.label) for m in block.metrics) + " |"
        rule = "|" + "|".join("---:" for _ in block.metrics) + "|"
        values = "| " + " | ".join(md(m.value) for m in block.metrics) + " |"
        return "\n".join((head, rule, values))
    if isinstance(block, TokenExample):
        return _example(block)
    raise TypeError(f"render_markdown: unknown block type {type(block).__name__}")


def render_markdown(doc: Document, image_dir: str = "images") -> str:
    parts = [f"# {md(doc.title)}", "", md(doc.subtitle), ""]
    parts += ["**Contents:** " + " · ".join(f"[{md(s.title)}](#{s.anchor})" for s in doc.sections), ""]
    for section in doc.sections:
        if not _ANCHOR.match(section.anchor):
            raise ValueError(f"render_markdown: section anchor {section.anchor!r} must match [a-z0-9-]+")
        parts += [f"<a id=\"{section.anchor}\"></a>", "", f"## {md(section.title)}", ""]
        for block in section.blocks:
            parts += [block_markdown(block, image_dir), ""]
    return "\n".join(parts).rstrip() + "\n"
