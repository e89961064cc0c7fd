"""Our shap explainers are shap's own code with dense coalition masks and masked rows built at
once: identical values and identical model calls. Where the budget covers Partition's whole tree,
its walk goes a level at a time: the same rows and the same values to the last bits."""

from __future__ import annotations

import numpy as np
import pytest
import shap

from glassworks.explain.shap import (
    DenseMaskPartition,
    Exact,
    Permutation,
    RowsAtOnceMaskedModel,
    TokenIdMasker,
    contiguous_partition_tree,
    lower_credit,
    partition_rows_ahead,
    shap_walk,
)

MASK_ID = 3


class RecordingModel:
    """A model of masked id rows (N, M) -> (N, 2) with interactions, recording every row it sees."""

    def __init__(self, n_tokens: int, seed: int, ignored: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.weights = rng.normal(size=n_tokens)
        self.pair = rng.normal(size=(n_tokens, n_tokens)) / n_tokens
        if ignored:  # the last `ignored` tokens change nothing
            self.weights[-ignored:] = 0.0
            self.pair[-ignored:, :] = self.pair[:, -ignored:] = 0.0
        self.rows: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        self.rows.append(rows.copy())
        kept = (rows != MASK_ID).astype(np.float64)  # (N, M)
        score = kept @ self.weights + np.einsum("ni,ij,nj->n", kept, self.pair, kept)
        p = 1.0 / (1.0 + np.exp(-score))
        return np.stack([1.0 - p, p], axis=1)  # (N, 2)


def _explain(cls, n_tokens: int, max_evals: int, seed: int, hierarchical: bool = True,
             keep_ids: frozenset[int] = frozenset(), ignored: int = 0):
    model = RecordingModel(n_tokens, seed, ignored)
    ids = np.arange(10, 10 + n_tokens, dtype=np.int64)[None, :]  # (1, M), no id equals MASK_ID
    np.random.seed(seed)  # Partition breaks priority ties with numpy's global RNG
    masker = TokenIdMasker(MASK_ID, hierarchical=hierarchical, keep_ids=keep_ids)
    # Ours draw from their own RandomState(seed), shap's Permutation seeds the global one.
    kwargs = {"seed": seed} if cls in (DenseMaskPartition, Exact, Permutation, shap.explainers.Permutation) else {}
    result = cls(model, masker, **kwargs)(ids, max_evals=max_evals, batch_size=64, silent=True)
    return result, model.rows


def _assert_same(ours, our_rows, theirs, their_rows) -> None:
    np.testing.assert_array_equal(ours.values, theirs.values)
    np.testing.assert_array_equal(ours.base_values, theirs.base_values)
    assert len(our_rows) == len(their_rows)
    for mine, reference in zip(our_rows, their_rows, strict=True):
        np.testing.assert_array_equal(mine, reference)


@pytest.mark.parametrize("n_tokens, max_evals", [
    (1, 50), (2, 50), (5, 500), (7, 30), (16, 170), (16, 171), (16, 500), (25, 458), (25, 459), (33, 200),
    (64, 500), (100, 1000)])
def test_same_values_and_same_model_calls_as_shap_partition(n_tokens, max_evals):
    """Our walk takes shap's batches a sort at a time: the same rows in the same calls (at most a
    batch, 64 here, each) and the same values bit for bit, whether the budget covers the whole tree
    (16 and 25 tokens need 170 and 458 rows besides the two ends) or stops it part way, where shap's
    priorities and random tie-breaks decide what is left out."""
    theirs, their_rows = _explain(shap.explainers.Partition, n_tokens, max_evals, seed=n_tokens)
    ours, our_rows = _explain(DenseMaskPartition, n_tokens, max_evals, seed=n_tokens)
    _assert_same(ours, our_rows, theirs, their_rows)


def test_priority_ties_are_broken_by_shaps_random_draws():
    """A model that ignores half its tokens makes equal priorities everywhere: which nodes the budget
    leaves out then rests on the tie-break draws, and ours are shap's, for every seed."""
    for seed in range(5):
        theirs, their_rows = _explain(shap.explainers.Partition, 24, 120, seed=seed, ignored=12)
        ours, our_rows = _explain(DenseMaskPartition, 24, 120, seed=seed, ignored=12)
        _assert_same(ours, our_rows, theirs, their_rows)


@pytest.mark.parametrize("ours_cls, theirs_cls, n_tokens, max_evals", [
    (Exact, shap.explainers.Exact, 1, 2), (Exact, shap.explainers.Exact, 9, 2**9),
    (Permutation, shap.explainers.Permutation, 3, 50), (Permutation, shap.explainers.Permutation, 20, 300),
])
def test_same_values_and_same_model_calls_as_shap_exact_and_permutation(ours_cls, theirs_cls, n_tokens, max_evals):
    # Exact and Permutation send delta masks, which shap expands to full masks for our masker.
    theirs, their_rows = _explain(theirs_cls, n_tokens, max_evals, seed=n_tokens, hierarchical=False)
    ours, our_rows = _explain(ours_cls, n_tokens, max_evals, seed=n_tokens, hierarchical=False)
    _assert_same(ours, our_rows, theirs, their_rows)


def test_rows_at_once_keep_special_ids_like_the_masker():
    """A [SEP] id (10, the first position) is never hidden, row by row or all at once."""
    theirs, their_rows = _explain(shap.explainers.Partition, 12, 100, seed=1, keep_ids=frozenset({10}))
    ours, our_rows = _explain(DenseMaskPartition, 12, 100, seed=1, keep_ids=frozenset({10}))
    _assert_same(ours, our_rows, theirs, their_rows)
    assert all((rows[:, 0] == 10).all() for rows in our_rows)
    assert ours.values[0, 0].tolist() == [0.0, 0.0]


def test_other_maskers_take_shaps_own_loop():
    """A masker without ``masked_rows`` (shap's Text masker here) still goes row by row."""
    def model(texts):
        return np.array([[float(len(t))] for t in texts])  # (N, 1)

    masker = shap.maskers.Text(r"\W+")
    theirs = shap.explainers.Partition(model, masker)(["a bb ccc"], silent=True)
    ours = DenseMaskPartition(model, masker)(["a bb ccc"], silent=True)
    np.testing.assert_array_equal(ours.values, theirs.values)
    fm = RowsAtOnceMaskedModel(model, masker, shap.links.identity, False, "a bb ccc")
    np.testing.assert_array_equal(fm(np.ones((1, len(fm)), dtype=bool)), [[8.0]])


def test_masks_are_dense_booleans_of_the_hierarchy():
    explainer = DenseMaskPartition(RecordingModel(5, 0), TokenIdMasker(MASK_ID, hierarchical=True))
    explainer(np.arange(10, 15, dtype=np.int64)[None, :], max_evals=40, silent=True)
    masks = explainer._mask_matrix
    assert isinstance(masks, np.ndarray) and masks.dtype == bool and masks.shape == (9, 5)  # (2M-1, M)
    np.testing.assert_array_equal(masks[:5], np.eye(5, dtype=bool))  # the leaves: one token each
    assert masks[-1].all()  # the root covers every token


def test_the_budgeted_tree_walk_is_shaps_own_code():
    """Only two names the walk looks up are replaced (a lock-free heap; numpy with ndarray.max and
    the explainer's own RandomState): where the budget stops it, the code that decides which node
    to expand and what it is worth is shap's, byte for byte."""
    rng = np.random.RandomState(0)
    walk = shap_walk(rng)
    assert walk.__code__ is shap.explainers.Partition.owen.__code__
    assert walk.__globals__["np"].random is rng
    assert walk.__globals__["np"].max(np.array([1.0, -3.0, 2.0])) == 2.0
    assert DenseMaskPartition.explain_row.__code__ is shap.explainers.Partition.explain_row.__code__
    assert Exact.explain_row.__code__ is shap.explainers.Exact.explain_row.__code__
    assert Permutation.explain_row.__code__ is shap.explainers.Permutation.explain_row.__code__


@pytest.mark.parametrize("cls, n_tokens, max_evals", [
    (DenseMaskPartition, 33, 200), (Permutation, 10, 100), (Exact, 6, 2**6)])
def test_our_explainers_leave_numpys_global_rng_alone(cls, n_tokens, max_evals):
    """Partition's tie-breaks and Permutation's shuffles come from the explainer's own RandomState,
    so examples explained together need not keep the global one apart."""
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    explainer = cls(RecordingModel(n_tokens, 0), TokenIdMasker(MASK_ID, hierarchical=cls is DenseMaskPartition),
                    seed=4)
    explainer.row_values(np.arange(10, 10 + n_tokens, dtype=np.int64), max_evals, 64)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("n_tokens", [2, 3, 7, 16, 33])
def test_lower_credit_matches_shaps_bit_for_bit(n_tokens):
    """The loop does shap's recursion's float operations in the same order a node."""
    clustering = contiguous_partition_tree(n_tokens)
    rng = np.random.default_rng(n_tokens)
    values = rng.normal(size=(2 * n_tokens - 1, 2))
    theirs = values.copy()
    shap.explainers._partition.lower_credit.py_func(len(values) - 1, 0, n_tokens, theirs, clustering)
    ours = values.copy()
    lower_credit(len(values) - 1, 0, n_tokens, ours, clustering)
    np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(ValueError, match="starts at the root"):
        lower_credit(0, 0, n_tokens, ours, clustering)


@pytest.mark.parametrize("n_tokens, max_evals, batch_size, levels", [
    (16, 500, 64, 3), (16, 500, 512, 4), (25, 500, 512, 5), (64, 500, 512, 4), (25, 100, 512, 3), (1, 50, 64, 0)])
def test_rows_ahead_are_the_rows_of_shaps_whole_level_batches(n_tokens, max_evals, batch_size, levels):
    """The empty coalition, then each level shap's walk takes whole (up to the batch size and the
    budget): the rows of shap's own first calls, whatever the model."""
    model = RecordingModel(n_tokens, 0)
    ids = np.arange(10, 10 + n_tokens, dtype=np.int64)
    masker = TokenIdMasker(MASK_ID, hierarchical=True)
    np.random.seed(0)
    shap.explainers.Partition(model, masker)(ids[None, :], max_evals=max_evals, batch_size=batch_size, silent=True)
    calls = model.rows  # [f00], [f11], then one call a batch
    ahead = masker.masked_rows(partition_rows_ahead(masker.clustering(ids), max_evals, batch_size), ids)
    expected = np.concatenate([calls[0], *calls[2:2 + levels]])
    assert sorted(map(tuple, ahead.tolist())) == sorted(map(tuple, expected.tolist()))
    if len(calls) > 2 + levels:  # the next batch is not a whole level: its rows depend on the outputs
        assert len(calls[2 + levels]) < 2 * 4 ** levels
