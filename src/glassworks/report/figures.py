"""PNG figures of the reports, returned as bytes (the HTML embeds them, the Markdown links files),
and the one owner of the sweep figures: the sweep report and the sweep parent's ``sweep/plots/``
(:func:`sweep_plots`) draw them with the same functions.

Drawn in the shared figure style (:mod:`glassworks.render.style`: fonts >= 9 pt, integer ticks on
integer data, mathtext off so a ``$`` in a class name or parameter value is shown literally) and
turned into bytes by :func:`glassworks.render.png_bytes`: no pyplot state, no display.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from glassworks.render.png import png_bytes
from glassworks.render.style import BASELINE_COLOUR, COLOURS, MARKERS, figure_style, new_figure
from glassworks.tracking.contract import EXPLAIN_BASELINE
from glassworks.tracking.names import safe_name

History = Sequence[tuple[int, float]]  # (step, value), in step order

_COLOURS = COLOURS


def _short(text: str, n: int = 28) -> str:
    text = str(text).replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def _plot(ax, history: History, label: str, colour: str, marker: str | None = None) -> None:
    if not history:
        return
    steps, values = zip(*history, strict=True)
    ax.plot(steps, values, label=label, color=colour, marker=marker, markersize=4, linewidth=1.4)


def learning_curves_png(histories: Mapping[str, History]) -> bytes:
    """Loss, accuracy/F1 and learning rate against the optimizer step, from the metric history."""
    with figure_style():
        return _learning_curves(histories)


def _learning_curves(histories: Mapping[str, History]) -> bytes:
    lr_keys = sorted(k for k in histories if k.startswith("lr"))
    panels = ["loss", "quality"] + (["lr"] if lr_keys else [])
    fig = new_figure(3.8 * len(panels), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    loss, quality = axes[0], axes[1]
    _plot(loss, histories.get("train/loss", ()), "train/loss (per step)", _COLOURS[0])
    _plot(loss, histories.get("val/loss", ()), "val/loss (per epoch)", _COLOURS[1], "o")
    loss.set_title("Loss")
    for i, key in enumerate(("train/acc", "val/acc", "val/f1")):
        _plot(quality, histories.get(key, ()), key, _COLOURS[i], "o")
    quality.set_title("Accuracy / F1 (per epoch)")
    if lr_keys:
        for i, key in enumerate(lr_keys):
            _plot(axes[2], histories[key], key, _COLOURS[i])
        axes[2].set_title("Learning rate")
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in axes:
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no history logged", ha="center", va="center", transform=ax.transAxes)
    return png_bytes(fig)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[int(t), int(p)] += 1
    return matrix


def confusion_png(matrix: np.ndarray, label_names: Sequence[str]) -> bytes:
    with figure_style():
        return _confusion(matrix, label_names)


def _confusion(matrix: np.ndarray, label_names: Sequence[str]) -> bytes:
    n = matrix.shape[0]
    side = float(np.clip(1.6 + 0.55 * n, 3.6, 9.0))
    fig = new_figure(side + 1.2, side)
    ax = fig.subplots()
    ax.grid(False)
    totals = matrix.sum(axis=1, keepdims=True)  # (C, 1)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{matrix[i, j]}", ha="center", va="center",
                    color="white" if share[i, j] > 0.6 else "#1f2328")
    names = [_short(name, 18) for name in label_names]
    ax.set_xticks(range(n), names, rotation=45 if n > 2 else 0, ha="right" if n > 2 else "center")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test split)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    return png_bytes(fig)


def _as_number(values: Sequence[str]) -> np.ndarray | None:
    try:
        out = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if np.all(np.isfinite(out)) else None


def metric_vs_params_png(params: Mapping[str, Sequence[str]], metric: Sequence[float], metric_name: str,
                         best: int | None = None) -> bytes:
    """One panel per swept parameter: the metric of every child against the parameter's value.

    Numeric parameters go on a numeric axis (log scale when they span >= 2 decades; integer
    ticks when every value is a whole number); others are categories. The best child is a
    labelled star over its point, explained in the legend ("child run" vs "best run").
    """
    with figure_style():
        return _metric_vs_params(params, metric, metric_name, best)


def _metric_vs_params(params: Mapping[str, Sequence[str]], metric: Sequence[float], metric_name: str,
                      best: int | None) -> bytes:
    from matplotlib import ticker

    names = list(params)
    n = max(1, len(names))
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = new_figure(max(3.8 * cols, 5.0), 3.3 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).reshape(-1)
    y = np.asarray(metric, dtype=np.float64)
    if not names:
        axes[0].text(0.5, 0.5, "no parameter varies across the children", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, name in zip(axes, names, strict=False):
        values = list(params[name])
        x = _as_number(values)
        if x is None:
            categories = list(dict.fromkeys(values))
            x = np.array([categories.index(v) for v in values], dtype=np.float64)
            ax.set_xticks(range(len(categories)), [_short(c, 16) for c in categories], rotation=30, ha="right")
            ax.set_xlim(-0.5, len(categories) - 0.5)
        elif np.all(x > 0) and x.max() / x.min() >= 100:
            ax.set_xscale("log")
            # A log axis labels its ticks in mathtext ($\mathdefault{10^{-3}}$), which the style's
            # literal text (text.parse_math off) showed as that source: plain numbers instead.
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        elif np.all(x == np.round(x)):
            ax.set_xticks(sorted(set(x.astype(int).tolist())))  # every swept value, nothing between
            pad = max(0.5, 0.08 * (x.max() - x.min()))
            ax.set_xlim(x.min() - pad, x.max() + pad)
        ax.scatter(x, y, color=_COLOURS[0], s=36, zorder=3, alpha=0.8, label="child run")
        if best is not None and 0 <= best < len(y):
            ax.scatter([x[best]], [y[best]], marker="*", s=240, color=_COLOURS[1], edgecolors="white",
                       linewidths=0.8, zorder=4, label="best run")
            ax.annotate("best", (x[best], y[best]), xytext=(8, 6), textcoords="offset points",
                        color=_COLOURS[1], fontweight="bold")
        ax.legend(loc="best")
        ax.set_xlabel(_short(name, 40))
        ax.set_ylabel(metric_name)
    for ax in axes[len(names):] if names else axes[1:]:
        ax.set_axis_off()
    fig.suptitle(f"{metric_name} against each swept parameter")
    return png_bytes(fig)


def accuracy_vs_explanations_png(accuracy: Sequence[float], quality: Mapping[str, Sequence[float]],
                                 accuracy_name: str, quality_name: str) -> bytes:
    """Each child's accuracy (x) against its explanation quality per method (y).

    Methods often tie (same child, same score): every method has its own colour, marker and
    size, drawn hollow and largest first, so tied points show as nested rings instead of
    hiding each other; the baseline is a grey cross.
    """
    with figure_style():
        return _accuracy_vs_explanations(accuracy, quality, accuracy_name, quality_name)


def _accuracy_vs_explanations(accuracy: Sequence[float], quality: Mapping[str, Sequence[float]],
                              accuracy_name: str, quality_name: str) -> bytes:
    fig = new_figure(8.0, 4.4)
    ax = fig.subplots()
    x = np.asarray(accuracy, dtype=np.float64)
    methods = [m for m in quality if m != EXPLAIN_BASELINE] + [m for m in quality if m == EXPLAIN_BASELINE]
    plotted = False
    for i, method in enumerate(methods):
        y = np.asarray(quality[method], dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            continue
        if method == EXPLAIN_BASELINE:
            ax.scatter(x[ok], y[ok], label=f"{_short(method)} (baseline)", color=BASELINE_COLOUR, marker="x", s=50,
                       zorder=5)
        else:
            size = 260 - 200 * i / max(1, len(methods) - 1)  # largest first: ties nest
            ax.scatter(x[ok], y[ok], label=_short(method), facecolors="none", marker=MARKERS[i % len(MARKERS)],
                       edgecolors=_COLOURS[i % len(_COLOURS)], s=size, linewidths=1.6, zorder=3 + i / 100)
        plotted = True
    if not plotted:
        ax.text(0.5, 0.5, "no child has both metrics", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0.0,
                  title="method (tied points nest)")
    ax.set_xlabel(accuracy_name)
    ax.set_ylabel(quality_name)
    ax.set_title(f"Accuracy vs explanation quality ({quality_name})")
    return png_bytes(fig)


def sweep_plots(table: pd.DataFrame, swept_keys: Sequence[str], metric: str, best_run_id: str | None,
                quality: str = "comprehensiveness") -> dict[str, bytes]:
    """The sweep parent's ``sweep/plots/``: file name -> PNG, drawn by the same functions as the
    sweep report (:func:`metric_vs_params_png` per swept key, :func:`accuracy_vs_explanations_png`).

    `table` is the sweep summary (one row per job: ``status``, ``run_id``, the swept keys, the
    metrics under their MLflow names). Only finished jobs are drawn; a figure with nothing to draw
    is left out.
    """
    done = table[table["status"] == "FINISHED"]
    plots: dict[str, bytes] = {}
    scored = done[done[metric].notna()] if metric in done.columns else done.iloc[:0]
    best = [i for i, run_id in enumerate(scored["run_id"]) if best_run_id and run_id == best_run_id]
    for key in swept_keys:
        if key in scored.columns and not scored.empty:
            png = metric_vs_params_png({key: scored[key].astype(str).tolist()}, scored[metric].tolist(), metric,
                                       best[0] if best else None)  # fmt: skip
            plots[f"{plot_name(key)}_vs_{plot_name(metric)}.png"] = png
    accuracy = next((m for m in ("test/acc", "val/acc") if m in done.columns), None)
    methods = [c.split("/")[1] for c in done.columns if re.fullmatch(rf"explain/[^/]+/{re.escape(quality)}", c)]
    if accuracy is not None and methods and not done.empty:
        ordered = [m for m in methods if m != EXPLAIN_BASELINE] + [m for m in methods if m == EXPLAIN_BASELINE]
        values = {m: done[f"explain/{m}/{quality}"].astype(float).tolist() for m in ordered}
        plots["accuracy_vs_faithfulness.png"] = accuracy_vs_explanations_png(
            done[accuracy].astype(float).tolist(), values, accuracy, quality)
    return plots


def plot_name(text: str) -> str:
    """``val/loss`` -> ``val_loss``: a swept key or metric as part of a plot's file name."""
    return safe_name(text, fallback="value", replacement="_")
