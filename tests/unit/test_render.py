"""The one rendering layer: one number format, one token scale, one base template (CSS + CSP)
under every page, autoescape everywhere, one PNG saver, and the sweep figures' one owner."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from glassworks.explain.render import IndexRow, render_example_html, render_index_html
from glassworks.explain.types import ExampleInput, Explanation
from glassworks.render import esc, fmt, png_bytes, render_page, save_png, token_cells
from glassworks.report.document import Document, Paragraph, Section, TokenExample, TokenRow
from glassworks.report.figures import sweep_plots
from glassworks.report.render_html import render_html
from glassworks.robustness.attack import AttackRecord
from glassworks.robustness.render import render_adversarial_html

PNG = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>\"'"


@pytest.mark.parametrize(("value", "digits", "shown"), [
    (None, 4, "–"), (True, 4, "true"), (7, 4, "7"), (12345, 4, "12,345"), (0.5, 4, "0.5000"),
    (0.98765432109, 10, "0.9876543211"), (123.456, 4, "123.5"), (123.456789, 10, "123.4567890"),
    (12345.6, 4, "12,346"), (0.0001234, 4, "1.23e-04"), (math.nan, 4, "nan"), (-math.inf, 4, "-inf"),
    ("text", 4, "text"), (np.float32(0.25), 4, "0.2500"),
])  # fmt: skip
def test_one_number_format(value, digits, shown):
    assert fmt(value, digits) == shown


def test_token_cells_scale_without_cls_and_mark_rationale_and_nan():
    cells = token_cells(["[CLS]", "a", "b", ""], [10.0, 1.0, -0.5, math.nan], [0, 1, 0, 0])
    assert [c.classes for c in cells] == ["tok special", "tok rationale", "tok", "tok nan"]
    assert cells[1].background == "rgba(214,39,40,0.850)"  # scaled to max |score| without [CLS]
    assert cells[0].background == cells[1].background  # [CLS]'s 10.0 is clipped, not the scale
    assert cells[2].background.startswith("rgba(31,119,180") and cells[3].background is None
    assert cells[3].shown == "\u2205"


def _example() -> tuple[ExampleInput, Explanation]:
    ex = ExampleInput(example_id=1, text=EVIL, label=0, ids=[2, 5, 6], tokens=["[CLS]", EVIL, "x"], rationale=None)
    expl = Explanation(method=EVIL, example_id=1, target=0, scores=np.array([0.0, 1.0, -1.0]), base_value=None,
                       model_output=0.7, class_scores=None, seconds=0.1)  # fmt: skip
    return ex, expl


def _pages() -> dict[str, str]:
    ex, expl = _example()
    record = AttackRecord(method=EVIL, example_id=1, target=0, success=True, n_edits=1, prob_before=0.7,
                          prob_after=0.2, prediction_after=1, n_model_calls=1, n_rows=3, original_ids=[2, 5, 6],
                          perturbed_ids=[2, 7, 6], edited_positions=[1])  # fmt: skip
    doc = Document(EVIL, EVIL, [Section("s", EVIL, [Paragraph(EVIL), TokenExample(EVIL, [(EVIL, EVIL)], [
        TokenRow(EVIL, ["[CLS]", EVIL], [0.0, 1.0], None, [(EVIL, "1.0000")], EVIL)])])])
    return {
        "example": render_example_html(ex, {EVIL: expl}, [EVIL], 0, [1.0], {EVIL: EVIL}),
        "index": render_index_html([IndexRow(1, "examples/e1.html", EVIL, EVIL, EVIL, 0.5, True)], {f"{EVIL}/x": 1.0}),
        "adversarial": render_adversarial_html([record], lambda i: {5: EVIL}.get(i, f"w{i}"), [EVIL], {}),
        "document": render_html(doc),
    }


def test_every_page_extends_the_one_base_and_escapes_everything():
    base = render_page("base.html", title="t")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', base).group(1)
    css = re.search(r"<style>(.*?)</style>", base, re.S).group(1)
    assert "script-src 'none'" in csp and "default-src 'none'" in csp
    for name, page in _pages().items():
        assert page.count("Content-Security-Policy") == 1 and csp in page, name
        assert page.count("<style>") == 1 and css in page, name
        assert "<script" not in page and str(esc(EVIL)) in page, name
    assert "&lt;script&gt;" in esc("<script>") and esc("'\"") == "&#39;&#34;"


def test_a_document_with_an_unknown_block_is_an_error():
    with pytest.raises(TypeError, match="unknown block type dict"):
        render_html(Document("t", "s", [Section("a", "A", [{"not": "a block"}])]))


def test_one_png_saver(tmp_path):
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    assert png_bytes(fig).startswith(PNG)
    path = save_png(fig, tmp_path / "a" / "b.png")
    assert path.read_bytes().startswith(PNG)


def test_sweep_plots_are_the_report_figures_one_per_swept_key():
    table = pd.DataFrame({
        "job": [0, 1, 2], "run_id": ["r0", "r1", "r2"], "status": ["FINISHED", "FINISHED", "FAILED"],
        "model.n_layers": ["1", "2", "3"], "optimizer": ["adam", "sgd", "adam"],
        "val/loss": [0.5, 0.4, math.nan], "test/acc": [0.8, 0.9, math.nan],
        "explain/shap/comprehensiveness": [0.3, 0.4, math.nan], "explain/random_order/comprehensiveness": [0.1, 0.1, math.nan],
    })  # fmt: skip
    plots = sweep_plots(table, ["model.n_layers", "optimizer"], "val/loss", "r1")
    assert sorted(plots) == ["accuracy_vs_faithfulness.png", "model.n_layers_vs_val_loss.png", "optimizer_vs_val_loss.png"]
    assert all(png.startswith(PNG) for png in plots.values())
    assert sweep_plots(table.iloc[:0], ["model.n_layers"], "val/loss", None) == {}
