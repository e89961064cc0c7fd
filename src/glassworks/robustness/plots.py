"""PNG figures of the robustness stage: mean deletion / insertion curves and flip rate per method.

Drawn in the shared figure style (:mod:`glassworks.render.style`) and written by
:func:`glassworks.render.save_png`: one colour and marker per method, the baseline dashed grey,
the legend beside the axes (never over the curves), integer ticks on k.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from glassworks.render.png import save_png
from glassworks.render.style import BASELINE_COLOUR, COLOURS, MARKERS, figure_style, new_figure
from glassworks.tracking.contract import ROBUSTNESS_BASELINE


def _name(method: str, max_chars: int = 28) -> str:
    method = str(method).replace("\n", " ")
    return method if len(method) <= max_chars else method[: max_chars - 1] + "\u2026"


def _lines(ax, series: Mapping[str, np.ndarray], baseline: str, start_k: int) -> None:
    methods = [m for m in series if m != baseline] + [m for m in series if m == baseline]
    for i, method in enumerate(methods):
        values = np.asarray(series[method], dtype=np.float64)  # (K+1,) for k = 0..K
        ks = np.arange(len(values))[start_k:]
        if method == baseline:
            style = {"color": BASELINE_COLOUR, "linestyle": "--", "marker": None, "label": f"{_name(method)} (baseline)"}
        else:
            style = {"color": COLOURS[i % len(COLOURS)], "marker": MARKERS[i % len(MARKERS)], "label": _name(method)}
        ax.plot(ks, values[start_k:], markersize=5, linewidth=1.6, **style)
    ax.set_xlabel("k (tokens)")
    if series:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0.0)


def curves_png(curves: Mapping[str, np.ndarray], path: Path, title: str, baseline: str = ROBUSTNESS_BASELINE) -> Path:
    """Mean p(original class) against k, one line per method (`curves`: method -> (K+1,) for k = 0..K)."""
    return _unit_range_lines_png(curves, path, "p(originally predicted class)", title, baseline, start_k=0)


def flip_rate_png(flip_rates: Mapping[str, np.ndarray], path: Path, baseline: str = ROBUSTNESS_BASELINE) -> Path:
    """Fraction of examples whose prediction flipped after deleting the top-k tokens (k = 1..K)."""
    return _unit_range_lines_png(flip_rates, path, "flip rate", "Prediction flips when the top-k attributed words are masked",
                                 baseline, start_k=1)


def _unit_range_lines_png(series: Mapping[str, np.ndarray], path: Path, ylabel: str, title: str, baseline: str,
                          start_k: int) -> Path:
    """One line per method against k (from `start_k`), on a 0..1 y axis."""
    with figure_style():
        fig = new_figure(8.0, 4.2)
        ax = fig.subplots()
        _lines(ax, series, baseline, start_k=start_k)
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title)
        return save_png(fig, path)
