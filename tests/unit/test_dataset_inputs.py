"""The training data as MLflow dataset inputs: the schema MLflow would infer from every row,
inferred from a few."""

from __future__ import annotations

import json

import mlflow.data
import pandas as pd
import pytest

from glassworks.tracking.dataset import dataset_inputs, frame_schema, representative_rows
from pipeline.stage import build_job
from tests.conftest import compose_config


def _frame(rationale_every: int | None) -> pd.DataFrame:
    """60 rows of (text, label, rationale); a rationale on every `rationale_every`-th row (None: none)."""
    rows = range(60)
    rationales = [[i % 2, 1, 0] if rationale_every and i % rationale_every == 0 else None for i in rows]
    return pd.DataFrame({"text": [f"w{i} w{i + 1}" for i in rows], "label": [i % 3 for i in rows],
                         "rationale": rationales})


def _mlflow_schema(frame: pd.DataFrame):
    """What MLflow infers when left alone: every row."""
    return mlflow.data.from_pandas(frame, targets="label").schema


@pytest.mark.parametrize("rationale_every", [None, 1, 7], ids=["no rationales", "all", "some"])
def test_the_schema_from_a_few_rows_is_mlflows_from_every_row(rationale_every):
    frame = _frame(rationale_every)
    assert frame_schema(frame) == _mlflow_schema(frame)
    picked = representative_rows(frame)
    assert len(picked) <= 2 and list(picked.index) == sorted(picked.index)


def test_a_real_split_is_logged_with_mlflows_schema_and_every_rows_profile(tmp_path):
    job = build_job(compose_config(tmp_path, ["data.source.n_train=300"]))
    dm = job.datamodule
    dm.prepare_data()
    dm.setup("fit")
    frames = {split: dm.split_frame(split) for split in ("train", "validation")}
    inputs = dataset_inputs(frames, dm.name, dm.source_uri, dm.digest)
    for (split, frame), logged in zip(frames.items(), inputs, strict=True):
        assert json.loads(logged.dataset.schema) == {"mlflow_colspec": _mlflow_schema(frame).to_dict()}
        assert json.loads(logged.dataset.profile) == {"num_rows": len(frame), "num_elements": int(frame.size)}
        assert logged.dataset.name.endswith(split)
