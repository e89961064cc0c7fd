"""One self-contained HTML file: images as base64 data URIs, no scripts, no network.

The page is the ``document.html`` template of :mod:`glassworks.render` (autoescaped; the one CSS
and Content-Security-Policy of ``base.html``), used by the run report and the sweep report alike:
it lays out the blocks of a :class:`~glassworks.report.document.Document`, whose numbers are
already formatted, so the HTML and the Markdown show the same strings.
"""

from __future__ import annotations

from typing import Any

from glassworks.render import render_page
from glassworks.report.document import (
    Code, Details, Document, Gallery, Headline, Image, KeyValues, Links, Paragraph, Table, TokenExample,
)  # fmt: skip

_BLOCKS = (Paragraph, KeyValues, Links, Table, Image, Gallery, Code, Details, Headline, TokenExample)


def block_kind(block: Any) -> str:
    """The template's name for a block: its class name (an unknown block type is an error)."""
    if not isinstance(block, _BLOCKS):
        raise TypeError(f"render_html: unknown block type {type(block).__name__}")
    return type(block).__name__


def render_html(doc: Document) -> str:
    for section in doc.sections:
        for block in section.blocks:
            block_kind(block)  # fail before rendering, naming the block type
    return render_page("document.html", title=doc.title, doc=doc, block_kind=block_kind)
