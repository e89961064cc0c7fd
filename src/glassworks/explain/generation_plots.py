"""Heatmap PNG of one example's generation attributions: one panel per method, generated tokens
(rows) x source tokens (columns), gold evidence outlined. Figure + Agg canvas, no pyplot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from glassworks.data.lm_vocab import WordVocab
from glassworks.explain.generation import StepAttribution
from glassworks.explain.generation_table import attribution_matrix
from glassworks.explain.generation_target import GeneratedExample

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
    cols = min(3, len(methods))
    n_rows = -(-len(methods) // cols)
    fig = Figure(figsize=(cols * max(3.0, 0.35 * len(sources) + 1.2), n_rows * (0.4 * len(rows) + 1.8)),
                 layout="constrained")
    for i, method in enumerate(methods):
        ax = fig.add_subplot(n_rows, cols, i + 1)
        matrix = attribution_matrix(example, attributions, method)  # (S, T)
        scale = np.nanmax(np.abs(matrix)) if np.isfinite(matrix).any() else 1.0
        scale = scale if scale > 0 else 1.0
        ax.imshow(np.ma.masked_invalid(matrix), cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
        for step in example.steps:
            for g in step.gold or []:
                ax.add_patch(Rectangle((g - 0.5, step.step - 0.5), 1, 1, fill=False, edgecolor="black", lw=1.5))
        ax.set_title(method, fontsize=9)
        ax.set_xticks(range(len(sources)), sources, rotation=90, fontsize=7, usetex=False)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
            label.set_parse_math(False)
    fig.suptitle(f"example {example.example_id}: generated tokens x source tokens (gold boxed)", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, format="png")
    return path
