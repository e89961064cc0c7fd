"""PNG figures of the robustness stage: mean deletion / insertion curves and flip rate per method.

Built on ``matplotlib.figure.Figure`` and written by :func:`glassworks.render.save_png` (an explicit Agg
canvas): no global backend switch and nothing shared between calls. Method names come from config, so their ``$``
is escaped to stop mathtext from interpreting it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from glassworks.render.png import save_png
from glassworks.tracking.contract import ROBUSTNESS_BASELINE


def _name(method: str, max_chars: int = 28) -> str:
    method = str(method).replace("$", r"\$").replace("\n", " ")
    return method if len(method) <= max_chars else method[: max_chars - 1] + "\u2026"


def _lines(ax, series: Mapping[str, np.ndarray], baseline: str, start_k: int) -> None:
    for method, values in series.items():
        values = np.asarray(values, dtype=np.float64)  # (K+1,) for k = 0..K
        ks = np.arange(len(values))[start_k:]
        style = {"color": "#57606a", "linestyle": "--"} if method == baseline else {}
        ax.plot(ks, values[start_k:], marker="o", markersize=3, linewidth=1.4, label=_name(method), **style)
    ax.set_xlabel("k (tokens)")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7, loc="best")


def curves_png(curves: Mapping[str, np.ndarray], path: Path, title: str, baseline: str = ROBUSTNESS_BASELINE) -> Path:
    """Mean p(original class) against k, one line per method (`curves`: method -> (K+1,) for k = 0..K)."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    _lines(ax, curves, baseline, start_k=0)
    ax.set_ylabel("p(originally predicted class)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize=10)
    return save_png(fig, path)


def flip_rate_png(flip_rates: Mapping[str, np.ndarray], path: Path, baseline: str = ROBUSTNESS_BASELINE) -> Path:
    """Fraction of examples whose prediction flipped after deleting the top-k tokens (k = 1..K)."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    _lines(ax, flip_rates, baseline, start_k=1)
    ax.set_ylabel("flip rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Prediction flips when the top-k attributed words are masked", fontsize=10)
    return save_png(fig, path)
