"""The long table of generation attributions (written as ``attributions.parquet``): one row per
(example, step, method, source position), and the (steps x positions) matrix of one method."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from glassworks.data.lm_vocab import WordVocab
from glassworks.explain.generation import StepAttribution
from glassworks.explain.generation_target import GeneratedExample

TABLE_COLUMNS: tuple[str, ...] = (
    "example", "step", "generated_token", "source_position", "source_token", "method", "score", "gold",
)


def attribution_table(examples: Sequence[GeneratedExample], attributions: Sequence[StepAttribution],
                      vocab: WordVocab) -> pd.DataFrame:
    """Rows for every prefix position of every explained step and method ([BOS] included)."""
    steps = {(s.example_id, s.step): s for e in examples for s in e.steps}
    records = []
    for a in attributions:
        step = steps[(a.example_id, a.step)]
        gold = set(step.gold or [])
        generated = vocab.id_to_token(step.token_id)
        for position, (token_id, score) in enumerate(zip(step.prefix_ids, a.scores)):
            records.append((a.example_id, a.step, generated, position, vocab.id_to_token(token_id),
                            a.method, float(score), position in gold))
    frame = pd.DataFrame.from_records(records, columns=list(TABLE_COLUMNS))
    return frame.astype({"example": "int64", "step": "int64", "source_position": "int64",
                         "score": "float64", "gold": "bool"})


def attribution_matrix(example: GeneratedExample, attributions: Sequence[StepAttribution], method: str) -> np.ndarray:
    """(n_steps, T) scores of ``method`` for one example, T = prompt + generated tokens (the
    full sequence); NaN where a step cannot see the position (not yet generated)."""
    width = len(example.prompt_ids) + len(example.generated_ids)
    matrix = np.full((len(example.steps), width), np.nan)
    for a in attributions:
        if a.example_id == example.example_id and a.method == method:
            matrix[a.step, : len(a.scores)] = a.scores
    return matrix
