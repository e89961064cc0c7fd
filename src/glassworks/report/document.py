"""A report as plain data: sections of blocks, rendered once to HTML and once to Markdown.

Every number is formatted to a string (:func:`glassworks.render.fmt`) when the block is built,
so the two renderings cannot disagree: both print the same cell strings. Renderers only escape and lay out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from glassworks.render.numbers import fmt  # noqa: F401 - the one number format, used by every report builder

_RELATIVE = re.compile(r"[A-Za-z0-9_./-]+")


@dataclass
class Paragraph:
    text: str
    kind: str = "text"  # text | note | warning


@dataclass
class Links:
    """Links to the run's other pages, relative to the report inside the run's artifacts
    (``../explanations/index.html``); built from contract paths, never from data."""

    text: str
    items: list[tuple[str, str]]  # (label, relative href)

    def __post_init__(self) -> None:
        for _, href in self.items:
            if not _RELATIVE.fullmatch(href) or href.startswith("/"):
                raise ValueError(f"Links: {href!r} is not a relative link between artifacts")


@dataclass
class KeyValues:
    items: list[tuple[str, str]]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str | None = None
    numeric: set[int] = field(default_factory=set)  # right-aligned column indices
    highlight: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells in bold


@dataclass
class Image:
    name: str  # file name next to the Markdown file, e.g. "learning_curves.png"
    png: bytes
    alt: str
    caption: str | None = None


@dataclass
class Gallery:
    """Figures side by side (wrapping) in HTML, one after the other in Markdown."""

    images: list[Image]


@dataclass
class Code:
    text: str
    language: str = ""


@dataclass
class Details:
    """Collapsed in HTML (``<details>``, no script needed), a titled block in Markdown."""

    summary: str
    block: Code | Table


@dataclass
class Metric:
    label: str
    value: str
    hint: str = ""


@dataclass
class Headline:
    """The few numbers a reader wants first, as cards in HTML and a one-row table in Markdown."""

    metrics: list[Metric]


@dataclass
class TokenRow:
    method: str
    tokens: list[str]
    scores: list[float]  # (T,) one per token, [CLS] included
    rationale: list[int] | None
    top: list[tuple[str, str]]  # (token, formatted score), highest first
    meta: str  # e.g. "base value 0.5021"


@dataclass
class TokenExample:
    """One explained example: every method's attributions over the same tokens, side by side."""

    title: str
    info: list[tuple[str, str]]
    rows: list[TokenRow]
    example_id: int | None = None  # its own page: contract.explain_example_page(example_id)


@dataclass
class Section:
    anchor: str
    title: str
    blocks: list[Any]


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section]
    summary: dict[str, Any] = field(default_factory=dict)  # raw values behind the report (report.json)

    def images(self) -> list[Image]:
        out = []
        for section in self.sections:
            for block in section.blocks:
                out += block.images if isinstance(block, Gallery) else [block] if isinstance(block, Image) else []
        return out
