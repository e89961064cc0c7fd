"""Read explanations back from the attribution table a run logged (``attributions.parquet``).

Later stages (robustness, report) start from what the run holds, so they work the same right
after the explain stage and on a run explained long ago.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from glassworks.explain.types import ExampleInput, Explanation


def explanations_from_table(table: pd.DataFrame) -> tuple[list[ExampleInput], dict[str, list[Explanation]]]:
    """(examples in example_id order, {method: explanations aligned with examples})."""
    missing = {"example_id", "method", "position", "token", "token_id", "score"} - set(table.columns)
    if missing:
        raise ValueError(f"attribution table lacks columns {sorted(missing)}")
    table = table.sort_values(["example_id", "method", "position"])
    examples: list[ExampleInput] = []
    by_method: dict[str, list[Explanation]] = {m: [] for m in sorted(table["method"].unique())}
    for example_id, rows in table.groupby("example_id", sort=True):
        first_method = rows[rows["method"] == rows["method"].iloc[0]]
        tokens = first_method["token"].astype(str).tolist()
        rationale = None
        if "rationale" in rows and not first_method["rationale"].isna().any():
            rationale = [int(v) for v in first_method["rationale"]]
        examples.append(ExampleInput(
            example_id=int(example_id), text=" ".join(tokens[1:]),
            label=int(first_method["label"].iloc[0]), ids=[int(i) for i in first_method["token_id"]],
            tokens=tokens, rationale=rationale,
            word_ids=([None if pd.isna(v) else int(v) for v in first_method["word_index"]]
                      if "word_index" in first_method else None)))
        for method, method_rows in rows.groupby("method", sort=True):
            base = method_rows["base_value"].iloc[0] if "base_value" in method_rows else np.nan
            by_method[method].append(Explanation(
                method=str(method), example_id=int(example_id),
                target=int(method_rows["target"].iloc[0]),
                scores=method_rows["score"].to_numpy(dtype=np.float64),  # (T,)
                base_value=None if pd.isna(base) else float(base),
                model_output=float(method_rows["model_output"].iloc[0]),
                class_scores=None, seconds=0.0))
    return examples, by_method
