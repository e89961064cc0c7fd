"""HTML pages from the Jinja2 templates in ``templates/`` (shipped as package data).

Autoescape is on for every template, so every value from data, config or a method (tokens, texts,
label names, method names, metric keys) is escaped, quotes included, in text and in attribute
values; ``base.html``'s Content-Security-Policy forbids scripts should an escape ever be missed.
Templates never get pre-built HTML strings: only data, formatted by the filters below.
"""

from __future__ import annotations

import base64
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import escape

from glassworks.render.numbers import fmt
from glassworks.render.tokens import token_cells, token_colour

esc = escape  # the one HTML escape: Jinja's (markupsafe), what autoescape applies


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("glassworks.render", "templates"), autoescape=True,
                      undefined=StrictUndefined, extensions=["jinja2.ext.do"], trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["fmt"] = fmt
    env.filters["data_uri"] = data_uri
    env.globals["token_cells"] = token_cells
    env.globals["token_colour"] = token_colour
    return env


_ENV = _environment()


def render_page(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with `context` (every page extends ``base.html``; pass `title`)."""
    return _ENV.get_template(template).render(**context)
