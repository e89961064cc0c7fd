"""SHAP on token ids: exactness against brute force, local accuracy, masking, seeding."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import is_monotonic, is_valid_linkage

from glassworks.explain.predict import predict_proba
from glassworks.explain.shap import ShapExplainer, TokenIdMasker, contiguous_partition_tree
from glassworks.explain.types import ExampleInput

from tests.unit.tiny_explain_model import CLS, MASK, N_CLASSES, PAD, VOCAB, tiny_model


def example(n_tokens: int, seed: int = 0, example_id: int = 0) -> ExampleInput:
    """[CLS] + n_tokens - 1 ordinary ids (none of the specials)."""
    rng = np.random.default_rng(seed)
    ids = [CLS] + [int(i) for i in rng.integers(4, VOCAB, n_tokens - 1)]
    return ExampleInput(example_id, " ".join(map(str, ids[1:])), 0, ids, [str(i) for i in ids], None)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model()


def brute_force_shapley(model: torch.nn.Module, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Shapley values (M, C) of the non-[CLS] positions, by enumerating every coalition."""
    m = len(ids) - 1
    coalitions = list(itertools.product([0, 1], repeat=m))  # 2**M keep-masks
    rows = [[CLS] + [ids[1 + i] if keep[i] else MASK for i in range(m)] for keep in coalitions]
    value = dict(zip(coalitions, predict_proba(model, rows, PAD)))  # coalition -> (C,)
    phi = np.zeros((m, N_CLASSES))
    for i in range(m):
        for keep in coalitions:
            if keep[i]:
                continue
            size = sum(keep)
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            with_i = keep[:i] + (1,) + keep[i + 1 :]
            phi[i] += weight * (value[with_i] - value[keep])
    return phi, value[tuple([0] * m)]


def test_exact_equals_brute_force_shapley(model):
    ex = example(8, seed=1)
    (result,) = ShapExplainer(algorithm="exact").explain(model, [ex])
    phi, base = brute_force_shapley(model, ex.ids)
    assert np.abs(phi).max() > 1e-3  # the check below must not pass trivially
    np.testing.assert_allclose(result.class_scores[1:], phi, atol=1e-5)
    np.testing.assert_allclose(result.class_scores[0], 0.0)
    np.testing.assert_allclose(result.extras["base_values"], base, atol=1e-6)
    np.testing.assert_allclose(result.scores, result.class_scores[:, result.target])
    probs = predict_proba(model, [ex.ids], PAD)[0]
    assert result.target == int(np.argmax(probs))
    assert result.model_output == pytest.approx(float(probs.max()), abs=1e-9)
    assert result.extras["n_evals"] == 2**7  # every coalition once (the full input among them, evaluated first)


@pytest.mark.parametrize(
    ("algorithm", "n_tokens", "max_evals"),
    [("partition", 20, 500), ("partition", 20, 40), ("exact", 10, 500), ("permutation", 12, 500)],
)
def test_local_accuracy(model, algorithm, n_tokens, max_evals):
    explainer = ShapExplainer(algorithm=algorithm, max_evals=max_evals)
    results = explainer.explain(model, [example(n_tokens, seed=s, example_id=s) for s in range(2)])
    for r in results:
        assert r.scores.shape == (n_tokens,) and r.class_scores.shape == (n_tokens, N_CLASSES)
        assert r.scores.sum() + r.base_value == pytest.approx(r.model_output, abs=1e-4)
        # Probabilities sum to 1, so every token's attributions over the classes cancel.
        np.testing.assert_allclose(r.class_scores.sum(axis=1), 0.0, atol=1e-6)
        assert r.scores[0] == 0.0 and r.seconds > 0
        assert r.extras["n_evals"] == explainer.last_n_evals or r is not results[-1]
    assert explainer.last_n_evals == results[-1].extras["n_evals"]
    if algorithm == "partition":
        assert results[-1].extras["n_evals"] <= max_evals + 1


def test_logit_output_is_additive_in_logit_space(model):
    (r,) = ShapExplainer(algorithm="exact", output="logit").explain(model, [example(6)])
    assert r.scores.sum() + r.base_value == pytest.approx(r.extras["explained_output"], abs=1e-4)
    assert 0.0 < r.model_output < 1.0  # still the probability, as the contract says


def test_exact_skips_long_inputs(model):
    """A per-example limit skips that example (NaN scores, the reason in extras), not the batch."""
    long, short = example(7), example(4, seed=1)
    skipped, done = ShapExplainer(algorithm="exact", exact_max_tokens=5).explain(model, [long, short])
    assert np.all(np.isnan(skipped.scores)) and "explain.shap.exact_max_tokens=5" in skipped.extras["skipped"]
    assert np.all(np.isfinite(done.scores)) and "skipped" not in done.extras


def test_permutation_skips_examples_it_has_too_few_evals_for(model):
    (r,) = ShapExplainer(algorithm="permutation", max_evals=10).explain(model, [example(12)])
    assert "explain.shap.max_evals=10" in r.extras["skipped"] and np.all(np.isnan(r.scores))


@pytest.mark.parametrize("kwargs", [{"algorithm": "kernel"}, {"output": "odds"}, {"max_evals": 1}])
def test_bad_arguments_name_the_key(kwargs):
    with pytest.raises(ValueError, match=r"explain\.shap\." + next(iter(kwargs))):
        ShapExplainer(**kwargs)


def test_only_cls_has_nothing_to_attribute(model):
    ex = ExampleInput(0, "", 0, [CLS], ["[CLS]"], None)
    (r,) = ShapExplainer().explain(model, [ex])
    assert r.scores.tolist() == [0.0] and r.base_value == pytest.approx(r.model_output)


@pytest.mark.parametrize("algorithm", ["partition", "permutation"])
def test_same_seed_same_values_and_global_rng_untouched(model, algorithm):
    # Few evaluations, so Partition's tie-breaking and Permutation's shuffles actually matter.
    exs = [example(16, seed=3, example_id=0), example(14, seed=4, example_id=1)]
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = ShapExplainer(algorithm=algorithm, max_evals=40, seed=7).explain(model, exs)
    assert np.array_equal(np.random.get_state()[1], before)
    b = ShapExplainer(algorithm=algorithm, max_evals=40, seed=7).explain(model, exs[::-1])[::-1]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.class_scores, y.class_scores)
    if algorithm == "permutation":
        c = ShapExplainer(algorithm=algorithm, max_evals=40, seed=8).explain(model, exs)
        assert not np.allclose(a[0].class_scores, c[0].class_scores)


def test_masker_keeps_cls_and_masks_by_id():
    masker = TokenIdMasker(mask_id=MASK, hierarchical=True)
    x = np.array([11, 12, 13, 14])  # ids[1:]: [CLS] is outside the features entirely
    out = masker(np.array([True, False, True, False]), x)
    assert out.tolist() == [[11, MASK, 13, MASK]]
    assert masker(False, x).tolist() == [[MASK] * 4]
    assert masker.shape(x) == (1, 4)
    assert masker.clustering(x).shape == (3, 4)
    assert TokenIdMasker(mask_id=MASK, hierarchical=False).clustering is None


def test_masker_never_hides_special_ids_whatever_the_mask_and_the_row():
    sep = 7
    masker = TokenIdMasker(mask_id=MASK, hierarchical=True, keep_ids=frozenset({sep}))
    first, second = np.array([11, sep, 13]), np.array([sep, 12, 13])
    assert masker(True, first).tolist() == [[11, sep, 13]]
    assert masker(False, first).tolist() == [[MASK, sep, MASK]]
    assert masker(np.array([True, False, False]), first).tolist() == [[11, sep, MASK]]
    assert masker(np.array([1, 0, 0]), first).tolist() == [[11, sep, MASK]]  # 0/1 masks read as bools
    # A new row: its own specials, not the previous row's.
    assert masker(False, second).tolist() == [[sep, MASK, MASK]]
    assert masker(np.array([False, True, False]), second).tolist() == [[sep, 12, MASK]]
    assert masker(False, first).tolist() == [[MASK, sep, MASK]]
    assert masker(True, first).dtype == first.dtype


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 19])
def test_partition_tree_is_a_balanced_contiguous_linkage(n):
    tree = contiguous_partition_tree(n)
    assert tree.shape == (n - 1, 4)
    if n == 1:
        return
    assert is_valid_linkage(tree) and is_monotonic(tree)
    leaves: dict[int, list[int]] = {i: [i] for i in range(n)}
    for row, (left, right, _, count) in enumerate(tree):
        merged = leaves[int(left)] + leaves[int(right)]
        assert merged == list(range(merged[0], merged[0] + len(merged)))  # adjacent positions only
        assert count == len(merged)
        leaves[n + row] = merged
    assert tree[-1, 2] == math.ceil(math.log2(n))  # balanced: height is the minimum possible


@pytest.fixture
def forward_rows(monkeypatch) -> list[int]:
    """The rows of every model call the SHAP explainer makes, in order (the real forwards run)."""
    import glassworks.explain.shap as shap_module

    calls: list[int] = []
    real = shap_module.predict_logits

    def counting(model, ids, pad_id, batch_size=512, max_tokens=None):
        calls.append(len(ids))
        return real(model, ids, pad_id, batch_size, max_tokens)

    monkeypatch.setattr(shap_module, "predict_logits", counting)
    return calls


def test_shap_model_calls_are_batched(model, forward_rows):
    calls = forward_rows
    explainer = ShapExplainer(algorithm="exact", batch_size=64)
    explainer.explain(model, [example(9)])
    assert sum(calls) == explainer.last_n_evals == 2**8
    assert max(calls) == 64  # shap hands over whole batches, not single rows


def test_limits_are_inclusive_and_errors_name_what_failed(model):
    ShapExplainer(algorithm="exact", exact_max_tokens=20)  # the documented upper bound is allowed
    with pytest.raises(ValueError, match=r"explain\.shap\.exact_max_tokens must be in \[1, 20\], got 21"):
        ShapExplainer(algorithm="exact", exact_max_tokens=21)
    with pytest.raises(ValueError, match="contiguous_partition_tree: need at least one position, got 0"):
        contiguous_partition_tree(0)
    # permutation needs 2n + 1 evaluations: exactly that many explains the example
    (r,) = ShapExplainer(algorithm="permutation", max_evals=2 * 5 + 1).explain(model, [example(6)])
    assert "skipped" not in r.extras and r.method == "shap" and np.all(np.isfinite(r.scores))


def test_describe_names_the_algorithm_and_budget():
    assert ShapExplainer().describe() == (
        "shap.explainers.Partition (algorithm=partition), max_evals=500 model evaluations per example, "
        "explains the probability of the predicted class, hidden tokens → [MASK]")  # fmt: skip
    assert "all 2^n coalitions (n ≤ 9 tokens)" in ShapExplainer(algorithm="exact", exact_max_tokens=9).describe()


def test_the_models_mask_and_special_ids_are_used_when_not_set(model):
    # A pretrained model brings its own [MASK] and specials ([SEP] here): hidden tokens become its
    # [MASK], and its specials are never hidden, so their SHAP value is exactly 0.
    sep, own_mask = 5, 6
    seen: list[np.ndarray] = []

    class WithSpecials(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model
            self.mask_id = own_mask
            self.special_ids = (CLS, sep)

        def forward(self, input_ids, attention_mask=None, **kwargs):
            seen.append(input_ids.numpy().copy())
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    ids = [CLS, 11, 12, 13, sep]
    ex = ExampleInput(0, "", 0, ids, [str(i) for i in ids], None)
    (r,) = ShapExplainer(algorithm="exact").explain(WithSpecials().eval(), [ex])
    rows = np.concatenate([s for s in seen])  # (N, T) every row the model saw
    assert set(np.unique(rows[:, 1:4])) <= {11, 12, 13, own_mask} and own_mask in rows[:, 1:4]
    assert np.all(rows[:, 4] == sep)
    assert r.scores[4] == 0.0 and np.all(r.scores[1:4] != 0.0)


def test_two_examples_share_forwards_and_the_last_ones_evals_are_reported(model):
    explainer = ShapExplainer(algorithm="exact", concurrent_examples=16)
    explainer.explain(model, [example(4)])  # one example: no batcher
    assert explainer.last_batch_stats is None
    a, b = explainer.explain(model, [example(4, example_id=0), example(6, seed=1, example_id=1)])
    assert explainer.last_batch_stats is not None and explainer.last_batch_stats.rows >= 2**3 + 2**5
    assert (a.extras["n_evals"], b.extras["n_evals"]) == (2**3, 2**5)
    assert explainer.last_n_evals == b.extras["n_evals"]
    explainer.explain(model, [example(5)])  # one at a time again: no stats left from the last call
    assert explainer.last_batch_stats is None


@pytest.mark.parametrize("n_tokens, max_evals, calls_expected", [(17, 500, 1), (64, 500, 2)])
def test_partition_asks_for_what_its_walk_needs_in_advance_in_one_forward(model, forward_rows, n_tokens, max_evals,
                                                                          calls_expected):
    """At 16 tokens the budget covers the whole tree, so every row goes in the first call; at 64
    the first four levels do, and the rows the priorities pick come in one more."""
    calls = forward_rows
    explainer = ShapExplainer(algorithm="partition", max_evals=max_evals, batch_size=512)
    explainer.explain(model, [example(n_tokens)])
    assert len(calls) == calls_expected and sum(calls) == explainer.last_n_evals <= max_evals + 1
