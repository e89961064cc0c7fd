"""The one rendering layer: every HTML page, every number shown, every PNG written.

* :mod:`.numbers` — :func:`fmt`, the one number format for HTML, Markdown and the console;
* :mod:`.tokens` — :func:`token_colour` (the diverging attribution scale) and :func:`token_cells`
  (one coloured cell per token), shared by the explanation pages and the report;
* :mod:`.pages` — the Jinja2 environment (``autoescape=True``) over ``templates/``:
  ``base.html`` holds the single CSS and the single Content-Security-Policy, and every page
  extends it (``explain_example.html``, ``explain_index.html``, ``adversarial.html``,
  ``document.html`` for the run and sweep reports); :data:`esc` is Jinja's escape;
* :mod:`.png` — :func:`png_bytes` / :func:`save_png`, the one way a matplotlib figure becomes a PNG.

Stages build plain data (dataclasses, dicts of formatted strings) and hand it to a template; they
never concatenate HTML. The report's Markdown rendering stays in
:mod:`glassworks.report.render_markdown` (a document model rendered twice), using :func:`fmt`.
"""

from glassworks.render.numbers import fmt
from glassworks.render.pages import esc, render_page
from glassworks.render.png import png_bytes, save_png
from glassworks.render.tokens import TokenCell, token_cells, token_colour

__all__ = ["TokenCell", "esc", "fmt", "png_bytes", "render_page", "save_png", "token_cells", "token_colour"]
