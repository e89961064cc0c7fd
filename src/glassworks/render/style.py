"""The one figure style: every PNG of every page is drawn with it and checked by the saver.

:func:`figure_style` is the matplotlib rc context a drawing function builds its figure in
(:func:`new_figure` opens a ``Figure`` with the style's defaults); :func:`enforce` is what
:func:`glassworks.render.png.png_bytes` applies to every figure before it is written, whoever drew it:

* no text under :data:`MIN_FONT_PT` points (at the saved size: the PNG is written at
  :data:`DPI`, so 9 pt is 12.5 px);
* an axis whose plotted data are all whole numbers (epochs, steps, k tokens, ``model.n_layers``)
  gets integer ticks only, unless its ticks were placed by hand (categories) or it is log-scaled.

:func:`describe` measures what was drawn (smallest font, each axis's tick labels and whether its
data are integers); the saver writes it into the PNG as the ``glassworks:style`` text chunk so a
page test can check every figure it shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
import numpy as np
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import AutoLocator, MaxNLocator

STYLE_NAME = "glassworks/1"
METADATA_KEY = "glassworks:style"  # PNG tEXt chunk holding describe()'s JSON
MIN_FONT_PT = 9.0
DPI = 100.0
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
BASELINE_COLOUR = "#57606a"

RC: dict[str, Any] = {
    "font.size": 10.0,
    "axes.titlesize": 11.0,
    "axes.labelsize": 10.0,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
    "figure.titlesize": 11.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=COLOURS),
    "lines.linewidth": 1.6,
    "lines.markersize": 5.0,
    "text.parse_math": False,  # labels from data ($ in a token, a class name) are shown literally
    "svg.fonttype": "none",
    "savefig.dpi": DPI,
    "figure.dpi": DPI,
}


@contextmanager
def figure_style() -> Iterator[None]:
    """Everything drawn inside (figures, axes, ticks, legends) takes the shared defaults."""
    with mpl.rc_context(RC):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure of `width` x `height` inches (call inside :func:`figure_style`)."""
    return Figure(figsize=(width, height), layout="constrained")


def _texts(fig: Figure) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _integer_data(ax: Axes, which: str) -> bool | None:
    """True when every finite plotted value on `which` ("x"/"y") is a whole number; None when
    the axes holds no lines or scatter points (images, bars, text only)."""
    if ax.images or ax.patches:  # heatmaps, bars: their ticks are categories placed by hand
        return None
    values: list[np.ndarray] = []
    for line in ax.get_lines():
        if line.get_transform() is not ax.transData:  # axhline / axvline: reference lines, not data
            continue
        data = line.get_xdata() if which == "x" else line.get_ydata()
        values.append(np.asarray(data, dtype=np.float64).reshape(-1))
    for collection in ax.collections:
        offsets = np.asarray(collection.get_offsets(), dtype=np.float64)
        if offsets.ndim == 2 and offsets.shape[0] and offsets.shape[1] == 2:
            values.append(offsets[:, 0 if which == "x" else 1])
    if not values:
        return None
    data = np.concatenate(values)
    data = data[np.isfinite(data)]
    if not data.size:
        return None
    return bool(np.all(np.abs(data - np.round(data)) < 1e-9))


def _is_auto(axis: Axis) -> bool:
    return isinstance(axis.get_major_locator(), (AutoLocator, MaxNLocator)) and axis.get_scale() == "linear"


def enforce(fig: Figure) -> None:
    """Raise every text below :data:`MIN_FONT_PT`, give integer-data axes integer ticks."""
    for text in _texts(fig):
        if text.get_fontsize() < MIN_FONT_PT:
            text.set_fontsize(MIN_FONT_PT)
    for ax in fig.axes:
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if _integer_data(ax, which) and _is_auto(axis):
                axis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: one tick
        legend = ax.get_legend()
        if legend is not None:
            for text in legend.get_texts():
                text.set_fontsize(max(text.get_fontsize(), MIN_FONT_PT))


def _tick_labels(axis: Axis) -> list[str]:
    lo, hi = sorted(axis.get_view_interval())
    return [t.get_text() for t, v in zip(axis.get_ticklabels(), axis.get_ticklocs(), strict=False)
            if t.get_visible() and t.get_text() and lo - 1e-9 <= v <= hi + 1e-9]


def describe(fig: Figure, dpi: float) -> dict[str, Any]:
    """What a drawn figure shows: the smallest font (pt and px at `dpi`), each axes' tick labels,
    scale, and whether its data are integers. Call after the figure was drawn."""
    sizes = [t.get_fontsize() for t in _texts(fig)]
    axes = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        entry: dict[str, Any] = {"title": ax.get_title()}
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            entry[which] = {"label": axis.get_label_text(), "scale": axis.get_scale(),
                            "integer_data": _integer_data(ax, which), "auto_ticks": _is_auto(axis),
                            "ticks": _tick_labels(axis)}
        axes.append(entry)
    smallest = min(sizes) if sizes else math.nan
    return {"style": STYLE_NAME, "dpi": dpi, "min_font_pt": smallest, "min_font_px": smallest * dpi / 72,
            "axes": axes}


def metadata_json(fig: Figure, dpi: float) -> str:
    return json.dumps(describe(fig, dpi), ensure_ascii=True)
