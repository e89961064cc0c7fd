"""HTML pages are inert whatever the data holds; PNG figures are written for odd inputs."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glassworks.explain.plots import attention_heatmaps_png, global_importance_png, metric_comparison_png
from glassworks.explain.render import IndexRow, render_example_html, render_index_html
from glassworks.testing import GLOBAL_IMPORTANCE_BAR, png_bars
from glassworks.explain.types import ExampleInput, Explanation
from glassworks.render import esc, token_colour

EVIL = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "<!--", "'onmouseover='alert(1)", "a&b", "$x^2$"]
OUR_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "dl", "dt", "dd", "div", "span",
            "table", "thead", "tbody", "tr", "th", "td", "p", "section", "a", "img", "nav"}  # fmt: skip


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.comments: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_comment(self, data):
        self.comments.append(data)

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> Collector:
    c = Collector()
    c.feed(page)
    c.close()
    return c


def _evil_example() -> tuple[ExampleInput, dict[str, Explanation]]:
    tokens = ["[CLS]", *EVIL, "fine"]
    ids = list(range(2, 2 + len(tokens)))
    ex = ExampleInput(
        example_id=7, text=" ".join(EVIL) + " fine", label=0, ids=ids, tokens=tokens,
        rationale=[0, 1, 0, 1, 0, 0, 0, 1],
    )  # fmt: skip
    t = len(ids)
    shap = Explanation(
        method="shap", example_id=7, target=1, scores=np.linspace(-1, 1, t), base_value=0.5, model_output=0.9,
        class_scores=None, seconds=0.01,
    )  # fmt: skip
    weird = Explanation(
        method='<script>m</script>"', example_id=7, target=1, scores=np.array([0, np.nan, 1, 2, 3, -1, np.inf, 0]),
        base_value=None, model_output=0.9, class_scores=None, seconds=0.02,
    )  # fmt: skip
    return ex, {"shap": shap, weird.method: weird}


def _assert_inert(page: str) -> Collector:
    parsed = _parse(page)
    assert not parsed.comments
    for tag, attrs in parsed.tags:
        assert tag in OUR_TAGS, tag
        assert tag != "script"
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for name in ("href", "src"):
            if name in attrs:
                assert "://" not in attrs[name] and not attrs[name].startswith(("/", "javascript:"))
    assert "<script" not in page.lower()
    assert "<img src=x" not in page
    assert "<!--" not in page
    assert "http://" not in page and "https://" not in page
    return parsed


def test_example_page_escapes_tokens_labels_methods_and_title():
    ex, explanations = _evil_example()
    labels = ["<script>alert('neg')</script>", '"><img src=x onerror=alert(2)>']
    page = render_example_html(
        ex, explanations, labels, prediction=1, probabilities=[0.1, 0.9],
        title_info={"run": "<!-- x", "<b>key</b>": '"><img src=y onerror=1>'},
    )  # fmt: skip
    parsed = _assert_inert(page)
    assert not any(tag == "img" for tag, _ in parsed.tags)
    text = "".join(parsed.text)
    for evil in EVIL:
        assert evil in text  # shown literally, just inert
    assert labels[0] in text and labels[1] in text and '<script>m</script>"' in text
    # Scores sit in tooltips, escaped; rationale tokens are underlined; NaN scores are grey.
    spans = [a for tag, a in parsed.tags if tag == "span" and "title" in a]
    titles = [a["title"] for a in spans]
    assert any(EVIL[1] in t and "score=" in t for t in titles)
    assert sum("rationale" in a["class"] for a in spans) == 2 * 3
    assert any("nan" in a["class"].split() for a in spans)
    assert "base value=0.5" in page and "misclassified" in page
    assert "flex-wrap: wrap" in page


def test_index_page_links_are_relative_and_escaped():
    rows = [
        IndexRow(example_id=7, href="examples/example_7.html", text=EVIL[0] * 20, label=EVIL[1],
                 prediction=EVIL[2], probability=0.9, correct=False),
    ]  # fmt: skip
    metrics = {"shap/comprehensiveness": 0.5, "<b>/x": float("nan"), "agreement/shap_vs_<i>": 0.1}
    page = render_index_html(rows, metrics, {"<!--": "-->"}, images=[("metrics.png", b"\x89PNG-bytes")])
    parsed = _assert_inert(page)
    assert ("a", {"href": "examples/example_7.html"}) in parsed.tags
    # figures travel inside the page: MLflow's artifact view opens the HTML without its folder
    assert ("img", {"src": "data:image/png;base64,iVBORy1ieXRlcw==", "alt": "metrics.png"}) in parsed.tags
    assert "comprehensiveness" in page and "<th>&lt;i&gt;</th>" in page and "_vs_" not in page  # agreement: a matrix
    for bad in ("https://evil.example/x.html", "/etc/passwd", "../up.html", "javascript:alert(1)"):
        with pytest.raises(ValueError, match="relative"):
            render_index_html([IndexRow(1, bad, "t", "a", "b", 0.5, True)])


def test_colour_scale_and_escape_helper():
    assert esc('<a href="x">\'') == "&lt;a href=&#34;x&#34;&gt;&#39;"  # Jinja's escape, quotes included
    assert token_colour(2.0, 1.0) == token_colour(1.0, 1.0)  # clipped
    assert token_colour(1.0, 1.0)[0].startswith("rgba(214") and token_colour(-1.0, 1.0)[0].startswith("rgba(31")
    assert token_colour(0.5, 0.0)[0].endswith(",0.000)")


def _png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_grid_shows_each_layer_and_head_in_its_own_panel(tmp_path):
    """One image holds every panel: panel (layer, head) is lit only where its own matrix is."""
    from PIL import Image

    from glassworks.render.png import style_of

    n_layers, n_heads, t = 2, 3, 6
    att = np.zeros((n_layers, n_heads, t, t), dtype=np.float32)  # (L, H, T, T)
    att[1, 2] = 1.0  # only layer 1, head 2 is bright (yellow); every other panel is dark purple
    tokens = [f"w{i}" for i in range(t)]
    path = attention_heatmaps_png(att, tokens, tmp_path / "att.png")
    style = style_of(path.read_bytes())
    grid = style["axes"][0]
    assert grid["y"]["ticks"] == tokens * n_layers and grid["x"]["ticks"] == tokens * n_heads
    assert (grid["y"]["label"], grid["x"]["label"]) == ("query", "key") and style["min_font_pt"] >= 9
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)  # (height, width, 3)
    bright = (pixels[..., 0] > 200) & (pixels[..., 1] > 200) & (pixels[..., 2] < 100)  # viridis at 1.0
    dark = (pixels[..., 0] < 90) & (pixels[..., 1] < 30) & (pixels[..., 2] > 60)  # viridis at 0.0
    ys, xs = np.nonzero(bright[:, : int(0.85 * pixels.shape[1])])  # the colour bar's yellow end aside
    # The bright panel is the bottom-right one: right of and below every dark pixel's median.
    dys, dxs = np.nonzero(dark[:, : int(0.85 * pixels.shape[1])])
    assert ys.min() > np.median(dys) and xs.min() > np.median(dxs)
    assert dark.sum() > 4 * bright.sum() > 0  # five dark panels to one bright


def test_plots_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    t = 60  # long enough for thinned tick labels
    att = rng.dirichlet(np.ones(t), size=(2, 3, t)).astype(np.float32)  # (L, H, T, T)
    tokens = ["[CLS]", *EVIL, *[f"tok{i}" * 5 for i in range(t - 1 - len(EVIL))]]
    assert _png(attention_heatmaps_png(att, tokens, tmp_path / "a" / "att.png"))
    with pytest.raises(ValueError, match="tokens"):
        attention_heatmaps_png(att, tokens[:-1], tmp_path / "bad.png")

    table = pd.DataFrame(
        {
            "example_id": np.repeat([0, 1], 5), "method": ["rollout"] * 10, "position": list(range(5)) * 2,
            "token": ["[CLS]", "a", "$b$", "c", "a"] * 2, "score": rng.normal(size=10),
        }
    )  # fmt: skip
    assert _png(global_importance_png(table, tmp_path / "g.png"))
    assert _png(global_importance_png(table.assign(score=np.nan), tmp_path / "g_nan.png"))

    metrics = {
        "shap": {"comprehensiveness": 0.4, "sufficiency": 0.1, "aopc": 0.3, "rationale_auprc": 0.8},
        "rollout": {"comprehensiveness": float("nan"), "sufficiency": 0.2, "aopc": 0.2},
        "random_order": {"comprehensiveness": 0.1, "sufficiency": 0.3, "aopc": 0.1, "rationale_auprc": 0.3},
    }
    assert _png(metric_comparison_png(metrics, tmp_path / "m.png"))
    assert _png(metric_comparison_png({}, tmp_path / "empty.png"))


def test_global_importance_png_draws_one_bar_per_token(tmp_path):
    table = pd.DataFrame(
        {
            "example_id": np.repeat([0, 1], 5), "method": ["rollout"] * 10, "position": list(range(5)) * 2,
            "token": ["[CLS]", "a", "$b$", "c", "a"] * 2, "score": np.linspace(0.1, 1.0, 10),
        }
    )  # fmt: skip
    # figsize (8.0, 0.3 * top + 1.4) inches at 100 dpi
    size, bars = png_bars(global_importance_png(table, tmp_path / "g.png"), GLOBAL_IMPORTANCE_BAR)
    assert (size, bars) == ((800, 740), 3)  # a, $b$, c; [CLS] left out
    assert png_bars(global_importance_png(table, tmp_path / "g2.png", top=2), GLOBAL_IMPORTANCE_BAR) == ((800, 200), 2)
    assert png_bars(global_importance_png(table.assign(score=np.nan), tmp_path / "g_nan.png"),
                    GLOBAL_IMPORTANCE_BAR)[1] == 0
