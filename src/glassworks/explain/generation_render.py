"""The LM task's explanation pages: one page per explained prompt (its heatmap PNG and every
method's generated-token x source-token score matrix) and the index. Rendered by the
``generation_example.html`` / ``generation_index.html`` templates of :mod:`glassworks.render`
(autoescaped, the one CSS and Content-Security-Policy); this module only builds their data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glassworks.data.lm_vocab import WordVocab
from glassworks.explain.generation import StepAttribution
from glassworks.explain.generation_plots import generation_heatmap_png
from glassworks.explain.generation_table import attribution_matrix
from glassworks.explain.generation_target import GeneratedExample
from glassworks.render import render_page, token_colour
from glassworks.tracking import contract as C


def _matrices(example: GeneratedExample, attributions: Sequence[StepAttribution], vocab: WordVocab,
              methods: Sequence[str]) -> list[dict[str, Any]]:
    """Per method: the source tokens and one row per generated token, each cell coloured on the
    shared diverging scale (scaled to the method's max |score| on this example)."""
    sources = [vocab.id_to_token(i) for i in example.prompt_ids + example.generated_ids]
    out = []
    for method in methods:
        matrix = attribution_matrix(example, attributions, method)  # (S, T)
        finite = np.isfinite(matrix)
        scale = float(np.max(np.abs(matrix[finite]))) if finite.any() else 1.0
        rows = []
        for step, row in zip(example.steps, matrix, strict=False):
            gold = set(step.gold or [])
            cells = []
            for p, value in enumerate(row):
                ok = bool(np.isfinite(value))
                background, colour = token_colour(float(value), scale or 1.0) if ok else (None, None)
                cells.append({"value": float(value), "finite": ok, "gold": p in gold, "background": background,
                              "colour": colour})
            rows.append({"token": vocab.id_to_token(step.token_id), "cells": cells})
        out.append({"method": method, "sources": sources, "rows": rows})
    return out


def write_generation_views(examples: Sequence[GeneratedExample], attributions: Sequence[StepAttribution],
                           vocab: WordVocab, methods: Sequence[str], out_dir: Path, n_views: int,
                           summary: Mapping[str, Mapping[str, float]], context: Mapping[str, Any]) -> None:
    """Per example (the first ``n_views``) a page and a heatmap PNG, and the index page."""
    folder_rel = C.relative_to(C.GENERATION_HEATMAPS_DIR, C.EXPLANATIONS_DIR)
    folder = out_dir / folder_rel
    folder.mkdir(parents=True, exist_ok=True)
    listed = []
    for example in list(examples)[:n_views]:
        if not example.steps:
            continue
        name = f"example_{example.example_id}"
        png = generation_heatmap_png(example, attributions, vocab, folder / f"{name}.png", methods)
        prompt, answer = vocab.decode(example.prompt_ids), vocab.decode(example.generated_ids)
        info = [("prompt", prompt), ("generated", answer), ("reference", vocab.decode(example.reference_ids))]
        page = render_page("generation_example.html", title=f"Example {example.example_id} — generation explanations",
                           example_id=example.example_id, info=info, image=png.read_bytes(),
                           matrices=_matrices(example, attributions, vocab, methods),
                           links=[("← all explanations", C.link(C.EXPLAIN_INDEX, C.GENERATION_HEATMAPS_DIR)),
                                  ("run report", C.link(C.REPORT_HTML, C.GENERATION_HEATMAPS_DIR))])
        (folder / f"{name}.html").write_text(page, encoding="utf-8")
        listed.append({"href": f"{folder_rel}/{name}.html", "name": name, "prompt": prompt, "answer": answer})
    keys = sorted({k for row in summary.values() for k in row})
    order = [m for m in summary if m != C.EXPLAIN_BASELINE] + [m for m in summary if m == C.EXPLAIN_BASELINE]
    rows = [(m + (" (baseline)" if m == C.EXPLAIN_BASELINE else ""), [summary[m].get(k) for k in keys]) for m in order]
    index = render_page("generation_index.html", title="Generation explanations — index",
                        info=[(str(k), v) for k, v in context.items()], columns=[k.replace("_", " ") for k in keys],
                        rows=rows, examples=listed, links=[("run report", C.link(C.REPORT_HTML, C.EXPLANATIONS_DIR))])
    (out_dir / C.file_name(C.EXPLAIN_INDEX)).write_text(index, encoding="utf-8")
