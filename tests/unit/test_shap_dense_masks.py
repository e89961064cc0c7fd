"""DenseMaskPartition is shap's Partition with dense coalition masks: identical values and calls."""

from __future__ import annotations

import numpy as np
import pytest
import shap

from glassworks.explain.shap import DenseMaskPartition, TokenIdMasker

MASK_ID = 3


class RecordingModel:
    """A model of masked id rows (N, M) -> (N, 2) with interactions, recording every row it sees."""

    def __init__(self, n_tokens: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.weights = rng.normal(size=n_tokens)
        self.pair = rng.normal(size=(n_tokens, n_tokens)) / n_tokens
        self.rows: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        self.rows.append(rows.copy())
        kept = (rows != MASK_ID).astype(np.float64)  # (N, M)
        score = kept @ self.weights + np.einsum("ni,ij,nj->n", kept, self.pair, kept)
        p = 1.0 / (1.0 + np.exp(-score))
        return np.stack([1.0 - p, p], axis=1)  # (N, 2)


def _explain(cls, n_tokens: int, max_evals: int, seed: int):
    model = RecordingModel(n_tokens, seed)
    ids = np.arange(10, 10 + n_tokens, dtype=np.int64)[None, :]  # (1, M), no id equals MASK_ID
    np.random.seed(seed)  # Partition breaks priority ties with numpy's global RNG
    result = cls(model, TokenIdMasker(MASK_ID, hierarchical=True))(ids, max_evals=max_evals, batch_size=64,
                                                                    silent=True)
    return result, model.rows


@pytest.mark.parametrize("n_tokens, max_evals", [(1, 50), (2, 50), (7, 30), (16, 500), (33, 200), (64, 500)])
def test_same_values_and_same_model_calls_as_shap_partition(n_tokens, max_evals):
    theirs, their_rows = _explain(shap.explainers.Partition, n_tokens, max_evals, seed=n_tokens)
    ours, our_rows = _explain(DenseMaskPartition, n_tokens, max_evals, seed=n_tokens)
    np.testing.assert_array_equal(ours.values, theirs.values)
    np.testing.assert_array_equal(ours.base_values, theirs.base_values)
    assert len(our_rows) == len(their_rows)
    for mine, reference in zip(our_rows, their_rows, strict=True):
        np.testing.assert_array_equal(mine, reference)


def test_masks_are_dense_booleans_of_the_hierarchy():
    explainer = DenseMaskPartition(RecordingModel(5, 0), TokenIdMasker(MASK_ID, hierarchical=True))
    explainer(np.arange(10, 15, dtype=np.int64)[None, :], max_evals=40, silent=True)
    masks = explainer._mask_matrix
    assert isinstance(masks, np.ndarray) and masks.dtype == bool and masks.shape == (9, 5)  # (2M-1, M)
    np.testing.assert_array_equal(masks[:5], np.eye(5, dtype=bool))  # the leaves: one token each
    assert masks[-1].all()  # the root covers every token


def test_the_tree_walk_is_shaps_own_code():
    """Only two names the walk looks up are replaced (a lock-free heap, ndarray.max): the code
    that decides which node to expand and what it is worth is shap's, byte for byte."""
    assert DenseMaskPartition.owen.__code__ is shap.explainers.Partition.owen.__code__
    assert DenseMaskPartition.owen.__globals__["np"].max(np.array([1.0, -3.0, 2.0])) == 2.0
