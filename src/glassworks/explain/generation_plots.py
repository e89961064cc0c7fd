"""Heatmap PNG of one example's generation attributions: one panel per method, generated tokens
(rows) x source tokens (columns), gold evidence outlined. Figure + Agg canvas, no pyplot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.patches import Rectangle

from glassworks.data.lm_vocab import WordVocab
from glassworks.explain.generation import StepAttribution
from glassworks.explain.generation_table import attribution_matrix
from glassworks.explain.generation_target import GeneratedExample
from glassworks.render.png import save_png
from glassworks.render.style import figure_style, new_figure

MAX_LABEL_CHARS = 12


def _label(token: str) -> str:
    token = token.replace("\n", "\u21b5")
    return token if len(token) <= MAX_LABEL_CHARS else token[: MAX_LABEL_CHARS - 1] + "\u2026"


def generation_heatmap_png(example: GeneratedExample, attributions: Sequence[StepAttribution],
                           vocab: WordVocab, path: str | Path, methods: Sequence[str] | None = None) -> Path:
    """Write the PNG and return its path. Each panel is scaled to its own max |score| (methods
    live on different scales); the diverging colour map keeps 0 white."""
    methods = list(methods) if methods is not None else list(dict.fromkeys(a.method for a in attributions
                                                                           if a.example_id == example.example_id))
    if not methods or not example.steps:
        raise ValueError(f"generation_heatmap_png: example {example.example_id} has no attributions to draw")
    sources = [_label(vocab.id_to_token(i)) for i in example.prompt_ids + example.generated_ids]
    rows = [_label(vocab.id_to_token(s.token_id)) for s in example.steps]
    with figure_style():
        return _heatmap(example, attributions, methods, sources, rows, path)


def _heatmap(example: GeneratedExample, attributions: Sequence[StepAttribution], methods: list[str],
             sources: list[str], rows: list[str], path: str | Path) -> Path:
    cols = min(3, len(methods))
    n_rows = -(-len(methods) // cols)
    # 9 pt tick labels need ~0.19 in each; the page shows the figure at most ~11.5 in wide.
    fig = new_figure(cols * max(3.4, 0.19 * len(sources) + 1.4), n_rows * (0.22 * len(rows) + 2.4))
    for i, method in enumerate(methods):
        ax = fig.add_subplot(n_rows, cols, i + 1)
        matrix = attribution_matrix(example, attributions, method)  # (S, T)
        scale = np.nanmax(np.abs(matrix)) if np.isfinite(matrix).any() else 1.0
        scale = scale if scale > 0 else 1.0
        ax.imshow(np.ma.masked_invalid(matrix), cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
        for step in example.steps:
            for g in step.gold or []:
                ax.add_patch(Rectangle((g - 0.5, step.step - 0.5), 1, 1, fill=False, edgecolor="black", lw=1.5))
        ax.grid(False)
        ax.set_title(method)
        ax.set_xticks(range(len(sources)), sources, rotation=90)
        ax.set_yticks(range(len(rows)), rows)
    fig.suptitle(f"example {example.example_id}: generated tokens x source tokens (gold boxed)")
    return save_png(fig, path)
