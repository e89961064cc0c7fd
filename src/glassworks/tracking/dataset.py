"""The training data as an MLflow dataset input (name, source, digest, schema, profile)."""

from __future__ import annotations

import warnings
from typing import Any

import mlflow.data
import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.entities import DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from glassworks.tracking import contract as C


def _source(uri: str) -> Any:
    """A file or URL MLflow knows how to resolve; otherwise (synthetic://, hub names) the URI
    is kept as a tag of a code source so it still shows in the UI."""
    try:
        with warnings.catch_warnings():
            # MLflow registers its local-file source class twice and warns that a path "can be
            # interpreted in multiple ways: LocalArtifactDatasetSource, LocalArtifactDatasetSource".
            warnings.filterwarnings("ignore", message=r"The specified dataset source can be interpreted in multiple ways",
                                    category=UserWarning)
            return resolve_dataset_source(uri)
    except MlflowException:
        return CodeDatasetSource(tags={"uri": uri})


def split_dataset_name(name: str, split: str) -> str:
    """The name a split's dataset input carries (``sst2-test``)."""
    return f"{name}-{split}"


def stored_digest(digest: str) -> str:
    """The data fingerprint as MLflow stores a dataset digest (at most 36 characters)."""
    return digest[:36]


def representative_rows(frame: Any) -> Any:
    """The rows of `frame` that decide MLflow's schema of it: in each column the first missing
    value and the first present one (at most two rows a column, in frame order)."""
    picks: set[int] = set()
    for column in frame.columns:
        missing = frame[column].isna().to_numpy()  # (N,)
        for wanted in (True, False):
            hits = np.flatnonzero(missing == wanted)
            if len(hits):
                picks.add(int(hits[0]))
    return frame.iloc[sorted(picks)]


def frame_schema(frame: Any) -> Any:
    """MLflow's schema of a split's frame (text, label, rationale), inferred from its
    :func:`representative_rows`: the same schema as from every row, since within a column the
    present values are of one type (the data validation checked each row), and what a column's
    rows decide beyond the type is only whether it may miss a value. MLflow's inference visits every
    row (the rationale lists element by element): 1.6-7.1 s for 100,000 rows, at every run's start."""
    return infer_signature(representative_rows(frame)).inputs


def dataset_inputs(frames: dict[str, Any], name: str, source: str, digest: str) -> list[DatasetInput]:
    """One input per split; the digest is the DataModule's, identical for identical data."""
    inputs = []
    for split, frame in frames.items():
        with warnings.catch_warnings():
            # MLflow hints that integer columns cannot hold missing values; the labels never miss
            # one (the data validation refuses it), so the hint only alarms.
            warnings.filterwarnings("ignore", message=r"Hint: Inferred schema contains integer column",
                                    category=UserWarning)
            dataset = mlflow.data.from_pandas(
                frame, source=_source(source), targets="label", name=split_dataset_name(name, split),
                digest=stored_digest(digest),
            )
            # `schema` is a cached property that would infer it from every row: filled in first.
            dataset.__dict__["schema"] = frame_schema(frame)
            entity = dataset._to_mlflow_entity()
        tags = [InputTag(key=C.TAG_DATASET_CONTEXT, value=split)]
        inputs.append(DatasetInput(dataset=entity, tags=tags))
    return inputs
