"""The sweep report's objective-against-parameter figure: one panel per axis of the sweep, not per
param that merely differs (a child from another config has ~140 params the others lack)."""

from __future__ import annotations

import io

from PIL import Image as PILImage

from glassworks.render.png import style_of
from glassworks.report.collect import RunRecord
from glassworks.report.document import Image, Paragraph
from glassworks.report.figures import metric_vs_params_png
from glassworks.report.sweep_report import (MAX_PARAM_PANELS, Child, SweepObjective, build_sweep_report,
                                            plotted_params, swept_params)


def child(i: int, params: dict[str, str], acc: float) -> Child:
    return Child(f"run{i}", f"sweep-{i}", "FINISHED", params, {"val/acc": acc}, {})


def parent() -> RunRecord:
    return RunRecord("parent", "sweep", "1", "exp", "FINISHED", 0, 1, {}, {}, {})


def test_a_param_with_one_value_among_the_children_that_have_it_is_not_an_axis():
    extra = {f"model.extra_{k:03d}": str(k) for k in range(140)}  # only the first child has them
    children = [child(0, {"optimizer.lr": "0.1", "seed": "0", **extra}, 0.7),
                child(1, {"optimizer.lr": "0.01", "seed": "1"}, 0.8),
                child(2, {"optimizer.lr": "0.001", "seed": "1"}, 0.6)]
    swept = swept_params(children)
    assert len(swept) == 142  # they all differ: the table lists them
    assert plotted_params(children, swept) == ["optimizer.lr", "seed"]

    document = build_sweep_report(parent(), children, SweepObjective("val/acc", "max"))
    (section,) = [s for s in document.sections if s.anchor == "parameters"]
    (image,) = [b for b in section.blocks if isinstance(b, Image)]
    width, height = PILImage.open(io.BytesIO(image.png)).size
    assert height < 2 * width  # one row of two panels, not 48 rows
    (note,) = [b for b in section.blocks if isinstance(b, Paragraph)]
    assert note.text.startswith("Not plotted: 140 more parameter(s)") and "model.extra_000" in note.text


def test_at_most_twelve_panels_and_every_axis_kept_in_order_below_that():
    children = [child(i, {f"p{k:02d}": str(i * k) for k in range(1, 20)}, 0.5 + i / 10) for i in range(3)]
    swept = swept_params(children)
    assert plotted_params(children, swept) == swept[:MAX_PARAM_PANELS] == [f"p{k:02d}" for k in range(1, 13)]
    few = children[:2]
    assert plotted_params(few, ["p03", "p01"]) == ["p03", "p01"]
    document = build_sweep_report(parent(), children[:2], SweepObjective("val/acc", "max"))
    (section,) = [s for s in document.sections if s.anchor == "parameters"]
    assert len([b for b in section.blocks if isinstance(b, Paragraph)]) == 1  # 19 swept, 12 plotted

    document = build_sweep_report(parent(), [child(0, {"a": "1"}, 0.5), child(1, {"a": "2"}, 0.6)],
                                  SweepObjective("val/acc", "max"))
    (section,) = [s for s in document.sections if s.anchor == "parameters"]
    assert [type(b) for b in section.blocks] == [Image]


def test_a_log_axis_labels_its_ticks_with_plain_numbers():
    """Learning rates spanning >= 2 decades go on a log axis; its tick labels were mathtext source
    ("$\\mathdefault{10^{-3}}$") under the style's literal text."""
    png = metric_vs_params_png({"optimizer.lr": ["0.001", "0.01", "0.1"], "seed": ["0", "1", "2"]},
                               [0.6, 0.8, 0.7], "val/acc", best=1)
    lr_axes, seed_axes = style_of(png)["axes"]
    assert lr_axes["x"]["scale"] == "log" and lr_axes["x"]["label"] == "optimizer.lr"
    assert lr_axes["x"]["ticks"] == ["0.001", "0.01", "0.1"]
    assert seed_axes["x"]["ticks"] == ["0", "1", "2"]
    assert not any("$" in label for axes in (lr_axes, seed_axes) for label in axes["x"]["ticks"] + axes["y"]["ticks"])
