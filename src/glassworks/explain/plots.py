"""PNG figures of the explain stage: attention heatmaps, global token importance, metric comparison.

Figures are drawn in the shared figure style (:mod:`glassworks.render.style`) and saved by
:func:`glassworks.render.save_png` (an explicit Agg canvas) instead of pyplot:
no global backend switch, no display needed, and nothing leaks between calls in a long process.
Token strings are drawn with mathtext off, so a ``$`` in the data is shown literally.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from glassworks.explain.word_units import word_label
from glassworks.render.png import save_png
from glassworks.render.style import BASELINE_COLOUR, figure_style, new_figure
from glassworks.tracking.contract import EXPLAIN_BASELINE

log = logging.getLogger(__name__)

MAX_TICK_LABELS = 30  # beyond this many tokens only every n-th one is labelled
MAX_LABEL_CHARS = 14
MAX_FIGURE_PIXELS = 12_000  # per side: large L x H grids get a lower dpi instead of a huge file

# Preference order when the table has no SHAP scores (additive, signed methods first).
_GLOBAL_PREFERENCE = ("shap", "input_x_gradient", "grad_attention", "rollout", "flow", "raw_attention")


def _label(token: str, max_chars: int = MAX_LABEL_CHARS) -> str:
    token = str(token).replace("\n", "\u21b5")
    return token if len(token) <= max_chars else token[: max_chars - 1] + "\u2026"


def _ticks(tokens: Sequence[str]) -> tuple[list[int], list[str]]:
    step = max(1, math.ceil(len(tokens) / MAX_TICK_LABELS))
    positions = list(range(0, len(tokens), step))
    return positions, [_label(tokens[p]) for p in positions]


def attention_heatmaps_png(attentions: np.ndarray, tokens: Sequence[str], path: Path) -> Path:
    """Grid of every layer's (rows) and head's (columns) attention matrix for one example.

    `attentions`: (L, H, T, T), row = query, column = key. Token labels go on the first column's
    y axis and the last row's x axis; panel size grows with T so that 9 pt labels do not overlap,
    and long inputs label every n-th token only.

    The L x H panels are ONE image on one axes, with blank gaps between them that hold the panel
    titles: constrained layout measures every axes' ticks and titles, so 72 axes (a 6-layer,
    12-head encoder) took 8.3 s to draw, 8 axes (the default model) ~0.6 s.
    """
    att = np.asarray(attentions, dtype=np.float32)
    if att.ndim != 4 or att.shape[2] != att.shape[3]:
        raise ValueError(f"attention_heatmaps_png: expected (L, H, T, T) attentions, got shape {att.shape}")
    n_layers, n_heads, t, _ = att.shape
    if len(tokens) != t:
        raise ValueError(f"attention_heatmaps_png: {len(tokens)} tokens for attentions over {t} positions")
    tick_pos, tick_labels = _ticks(tokens)
    panel = float(np.clip(1.4 + 0.17 * len(tick_pos), 2.6, 7.5))  # inches; 9 pt labels need ~0.17 in each
    cell = panel / t  # inches a token
    gap_x = max(1, math.ceil(0.15 / cell))  # blank cells between columns
    gap_y = max(1, math.ceil(0.35 / cell))  # blank cells above each row: its panels' titles
    grid = np.full((n_layers * (t + gap_y), n_heads * (t + gap_x) - gap_x), np.nan, dtype=np.float32)
    origins = {}  # (layer, head) -> (row, column) of the panel's first cell
    for layer in range(n_layers):
        for head in range(n_heads):
            row, col = layer * (t + gap_y) + gap_y, head * (t + gap_x)
            grid[row : row + t, col : col + t] = att[layer, head]
            origins[layer, head] = (row, col)
    width, height = cell * grid.shape[1] + 1.6, cell * grid.shape[0] + 1.0
    dpi = min(100.0, MAX_FIGURE_PIXELS / max(width, height))
    with figure_style():
        fig = new_figure(width, height)
        ax = fig.subplots()
        ax.grid(False)
        ax.set_frame_on(False)
        # Shared 0..1 colour range: heads are comparable with each other; the gaps stay blank.
        cmap = mpl.colormaps["viridis"].with_extremes(bad="white")
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap=cmap, interpolation="nearest")
        title_size = mpl.rcParams["axes.titlesize"]
        for (layer, head), (row, col) in origins.items():
            ax.add_patch(Rectangle((col - 0.5, row - 0.5), t, t, fill=False, linewidth=0.8, edgecolor="black"))
            ax.text(col + (t - 1) / 2, row - 0.5 - 0.06 / cell, f"layer {layer} · head {head}", ha="center",
                    va="bottom", fontsize=title_size)
        ax.set_yticks([origins[layer, 0][0] + p for layer in range(n_layers) for p in tick_pos],
                      tick_labels * n_layers)
        ax.set_xticks([origins[0, head][1] + p for head in range(n_heads) for p in tick_pos],
                      tick_labels * n_heads, rotation=90)
        ax.set_ylabel("query")
        ax.set_xlabel("key")
        fig.colorbar(image, ax=ax, shrink=0.6, label="attention probability")
        return save_png(fig, path, dpi)


def global_importance(table: pd.DataFrame, method: str | None = None) -> tuple[pd.DataFrame, str | None, str]:
    """Mean |score| and occurrence count per word (or token) string of one method, most important
    first, with the method and the unit ("words" or "tokens").

    Uses SHAP when the table has it (or `method` when given), otherwise the first available
    method of a fixed preference list, the random baseline last. [CLS] (position 0) is left out.
    With a ``word_index`` column, each word's score is the sum of its tokens' (wordpieces) and its
    label the joined pieces (:func:`word_label`); specials ([SEP]) are left out. A word-level
    tokenizer gives the same figures either way.
    """
    required = {"method", "token", "position", "score"}
    if missing := required - set(table.columns):
        raise ValueError(f"global_importance_png: table lacks columns {sorted(missing)}")
    methods = list(dict.fromkeys(table["method"]))
    if method is None:
        preferred = [m for m in _GLOBAL_PREFERENCE if m in methods]
        others = [m for m in methods if m not in _GLOBAL_PREFERENCE and m != EXPLAIN_BASELINE]
        fallback = preferred + others + [m for m in methods if m == EXPLAIN_BASELINE]
        method = fallback[0] if fallback else None
    rows = table[(table["method"] == method) & (table["position"] > 0)] if method is not None else table.iloc[:0]
    rows = rows[np.isfinite(rows["score"].to_numpy(dtype=np.float64))]
    unit = "tokens"
    if "word_index" in rows.columns and rows["word_index"].notna().any():
        unit = "words"
        words = rows[rows["word_index"].notna()].sort_values(["example_id", "position"])
        rows = (words.groupby(["example_id", "word_index"], sort=False)
                .agg(token=("token", word_label), score=("score", "sum")).reset_index())
    stats = rows.assign(abs_score=rows["score"].abs()).groupby("token")["abs_score"].agg(["mean", "count"])
    stats = stats.sort_values(["mean", "count"], ascending=[False, False])
    stats.attrs["n_examples"] = int(rows["example_id"].nunique())
    return stats, method, unit


def global_importance_png(table: pd.DataFrame, path: Path, top: int = 20, method: str | None = None) -> Path:
    """Bar chart of :func:`global_importance`: the `top` words (tokens) by mean |score|."""
    stats, method, unit = global_importance(table, method)
    with figure_style():
        return _global_importance_png(stats, method, unit, path, top)


def _global_importance_png(stats: pd.DataFrame, method: str | None, unit: str, path: Path, top: int) -> Path:
    fig = new_figure(8.0, 0.3 * top + 1.4)
    ax = fig.subplots()
    if stats.empty:
        ax.text(0.5, 0.5, "no finite attributions", ha="center", va="center")
        ax.set_axis_off()
        return save_png(fig, path, 100)
    n_examples = stats.attrs["n_examples"]
    stats = stats.head(top).iloc[::-1]
    labels = [f"{_label(tok)} (n={n})" for tok, n in zip(stats.index, stats["count"], strict=True)]
    ax.barh(range(len(stats)), stats["mean"].to_numpy(), color="#d62728")
    ax.set_yticks(range(len(stats)), labels)
    ax.grid(False, axis="y")
    ax.set_xlabel(f"mean |{method} score| per occurrence")
    ax.set_title(f"Top {len(stats)} {unit} by mean |{method}| over {n_examples} examples")
    return save_png(fig, path, 100)


_COMPARED = (
    ("comprehensiveness", "comprehensiveness ↑"),
    ("sufficiency", "sufficiency ↓"),
    ("aopc", "AOPC (MoRF) ↑"),
    ("rationale_auprc", "rationale AUPRC ↑"),
    ("rationale_f1", "rationale F1 ↑"),
)


def metric_comparison_png(
    metrics_by_method: Mapping[str, Mapping[str, float]], path: Path, baseline: str = EXPLAIN_BASELINE
) -> Path:
    """One panel per metric (faithfulness, plausibility), one bar per method, dashed line = random.

    Metrics no method has are left out; NaN values are drawn as missing bars.
    """
    with figure_style():
        return _comparison(metrics_by_method, path, baseline)


def _comparison(metrics_by_method: Mapping[str, Mapping[str, float]], path: Path, baseline: str) -> Path:
    methods = [m for m in metrics_by_method if m != baseline] + [m for m in metrics_by_method if m == baseline]
    panels = [(k, title) for k, title in _COMPARED if any(k in metrics_by_method[m] for m in methods)]
    n = max(1, len(panels))
    cols = min(n, 3)  # wraps: the page shows it at most ~11.5 in wide without shrinking it
    n_rows = math.ceil(n / cols)
    longest = max((len(m) for m in methods), default=0)  # rotated method names need height
    fig = new_figure(max(3.8 * cols, 6.0), n_rows * (3.0 + 0.09 * min(longest, 24)))
    axes = fig.subplots(n_rows, cols, squeeze=False).reshape(-1)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if not panels:
        axes[0].text(0.5, 0.5, "no metrics", ha="center", va="center")
        axes[0].set_axis_off()
        return save_png(fig, path, 100)
    for ax, (key, title) in zip(axes[: len(panels)], panels, strict=True):
        values = np.array([float(metrics_by_method[m].get(key, math.nan)) for m in methods])
        colours = [BASELINE_COLOUR if m == baseline else "#1f77b4" for m in methods]
        ax.bar(range(len(methods)), np.nan_to_num(values, nan=0.0), color=colours)
        for i, v in enumerate(values):
            if not np.isfinite(v):
                ax.text(i, 0, "n/a", ha="center", va="bottom")
        base = metrics_by_method.get(baseline, {}).get(key)
        if base is not None and np.isfinite(base):
            ax.axhline(base, color=BASELINE_COLOUR, linestyle="--", linewidth=1, label=f"{baseline} (baseline)")
        ax.set_xticks(range(len(methods)), [_label(m, 24) for m in methods], rotation=45, ha="right")
        ax.grid(False, axis="x")
        ax.set_title(title)
        ax.axhline(0, color="black", linewidth=0.5)
    return save_png(fig, path, 100)
