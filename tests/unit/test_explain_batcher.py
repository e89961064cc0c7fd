"""Cross-example SHAP batching: the same values as one example at a time, in fewer forwards."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from glassworks.explain.batcher import RowBatcher
from glassworks.explain.predict import (
    CPU_ACTIVATION_BUDGET_PER_THREAD,
    chunk_bounds,
    predict_logits,
    rows_per_chunk,
    token_budget,
    token_width,
)
from glassworks.explain.shap import ShapExplainer
from glassworks.explain.types import ExampleInput

from tests.unit.tiny_explain_model import CLS, PAD, VOCAB, tiny_model


def example(n_tokens: int, seed: int, example_id: int) -> ExampleInput:
    rng = np.random.default_rng(seed)
    ids = [CLS] + [int(i) for i in rng.integers(4, VOCAB, n_tokens - 1)]
    return ExampleInput(example_id, " ".join(map(str, ids[1:])), 0, ids, [str(i) for i in ids], None)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model()


# Different lengths, so rows of several examples are padded together in one forward.
LENGTHS = {"partition": [18, 9, 23, 12, 1, 16, 20], "exact": [8, 5, 10, 7], "permutation": [12, 7, 15, 10, 9]}


@pytest.mark.parametrize(("algorithm", "max_evals"), [("partition", 500), ("partition", 40), ("exact", 500),
                                                      ("permutation", 200)])
def test_batched_equals_one_example_at_a_time(model, algorithm, max_evals):
    examples = [example(n, seed=i, example_id=i) for i, n in enumerate(LENGTHS[algorithm])]
    np.random.seed(5)
    state = np.random.get_state()[1].copy()
    alone = ShapExplainer(algorithm=algorithm, max_evals=max_evals, seed=3, concurrent_examples=1)
    batched = ShapExplainer(algorithm=algorithm, max_evals=max_evals, seed=3, concurrent_examples=3,
                            batch_size=256)
    a = alone.explain(model, examples)
    b = batched.explain(model, examples)
    assert np.array_equal(np.random.get_state()[1], state)  # the caller's RNG is left as it was
    assert [x.example_id for x in b] == [ex.example_id for ex in examples]
    for x, y in zip(a, b):
        assert x.target == y.target and x.extras["n_evals"] == y.extras["n_evals"]
        assert np.abs(x.class_scores).max() > 1e-4 or len(x.scores) == 1  # not trivially equal
        np.testing.assert_allclose(y.class_scores, x.class_scores, atol=1e-6, rtol=0)
        np.testing.assert_allclose(y.extras["base_values"], x.extras["base_values"], atol=1e-6, rtol=0)
        assert y.model_output == pytest.approx(x.model_output, abs=1e-6)
        assert y.seconds > 0
    stats = batched.last_batch_stats
    assert stats.rows == sum(x.extras["n_evals"] for x in a)
    # Three examples at a time: far fewer forwards than shap's own per-example calls.
    assert stats.flushes < sum(x.extras["n_evals"] for x in a) / 10 or algorithm == "exact"
    assert batched.last_n_evals == b[-1].extras["n_evals"]


def test_batcher_gathers_rows_of_every_waiting_task():
    seen: list[int] = []

    def forward(ids: np.ndarray) -> np.ndarray:  # (B, T) -> (B, 1): sum of the non-pad ids
        seen.append(ids.shape[0])
        return (ids * (ids != 0)).sum(axis=1, keepdims=True).astype(np.float64)

    def task(k: int):
        def run(submit):
            outs = []
            for step in range(3):
                rows = np.full((k + 1, k + 2), step + 1)  # k+1 rows of width k+2
                outs.append(submit(rows)[:, 0].tolist())
            return outs
        return run

    batcher = RowBatcher(forward, pad_id=0, batch_size=4)
    results = batcher.run([task(k) for k in range(3)])
    for k, outs in enumerate(results):
        assert outs == [[float((step + 1) * (k + 2))] * (k + 1) for step in range(3)]
    # Each step: 1 + 2 + 3 = 6 rows from the three tasks in one flush, in chunks of at most 4.
    assert batcher.stats.flushes == 3 and batcher.stats.row_counts == [6, 6, 6]
    assert seen == [4, 2] * 3


def test_a_failing_forward_reaches_every_waiting_task_and_nothing_hangs():
    def forward(ids: np.ndarray) -> np.ndarray:
        raise RuntimeError("model exploded")

    batcher = RowBatcher(forward, pad_id=0)
    with pytest.raises(RuntimeError, match="model exploded"):
        batcher.run([lambda submit: submit(np.ones((2, 3), dtype=np.int64))] * 4)


def test_a_failing_task_does_not_stop_the_others():
    def forward(ids: np.ndarray) -> np.ndarray:
        return np.zeros((ids.shape[0], 1))

    def bad(submit):
        submit(np.ones((1, 2), dtype=np.int64))
        raise ValueError("example 1 is broken")

    good_calls: list[int] = []

    def good(submit):
        for _ in range(3):
            good_calls.append(len(submit(np.ones((2, 2), dtype=np.int64))))

    with pytest.raises(ValueError, match="example 1 is broken"):
        RowBatcher(forward, pad_id=0).run([good, bad, good])
    assert good_calls == [2] * 6


def test_padding_other_examples_rows_does_not_change_a_row(model):
    rows = [[CLS, 5, 6, 7], [CLS, 8, 9, 10, 11, 12, 13, 14]]
    batcher = RowBatcher(lambda ids: predict_logits(model, ids, PAD), pad_id=PAD)
    out = batcher.run([lambda submit, r=r: submit(np.array([r])) for r in rows])
    for r, o in zip(rows, out):
        np.testing.assert_allclose(o[0], predict_logits(model, [r], PAD)[0], atol=1e-6)


def test_concurrent_examples_must_be_positive():
    with pytest.raises(ValueError, match="explain.shap.concurrent_examples"):
        ShapExplainer(concurrent_examples=0)


def test_tasks_and_forwards_run_in_the_callers_thread():
    """No thread is started: torch's thread-local modes (no_grad, deterministic) hold in the forward."""
    caller = threading.get_ident()
    threads_before = threading.active_count()
    seen: set[int] = set()

    def forward(ids: np.ndarray) -> np.ndarray:
        seen.add(threading.get_ident())
        assert not torch.is_grad_enabled()
        return np.zeros((ids.shape[0], 1))

    def task(submit):
        seen.add(threading.get_ident())
        assert threading.active_count() == threads_before
        return [len(submit(np.ones((n, 2), dtype=np.int64))) for n in (1, 2)]

    with torch.no_grad():
        assert RowBatcher(forward, pad_id=0).run([task] * 3) == [[1, 2]] * 3
    assert seen == {caller}


def test_map_needs_a_positive_concurrency():
    with pytest.raises(ValueError, match="RowBatcher.map: concurrency must be >= 1, got 0"):
        RowBatcher(lambda ids: ids, pad_id=0).map(lambda item, submit: item, [1, 2], 0)


def test_submit_outside_run_is_an_error():
    with pytest.raises(RuntimeError, match="RowBatcher.submit: call it from a task"):
        RowBatcher(lambda ids: ids, pad_id=0).submit(np.ones((1, 2), dtype=np.int64))


def test_chunks_hold_at_most_batch_size_rows_and_max_tokens_padded_tokens():
    widths = [2, 3, 3, 5, 9, 9, 20]
    assert chunk_bounds(widths, 4, None) == [(0, 4), (4, 7)]
    bounds = chunk_bounds(widths, 4, 12)
    assert bounds == [(0, 3), (3, 4), (4, 5), (5, 6), (6, 7)]  # a row wider than the cap goes alone
    assert [b for a, b in bounds][-1] == len(widths) and all(b > a for a, b in bounds)
    assert chunk_bounds([5, 2, 9, 1], 10, 10) == [(0, 2), (2, 3), (3, 4)]  # unsorted: padded to the widest
    assert rows_per_chunk(16, 512, 2048) == 128 and rows_per_chunk(16, 64, 2048) == 64
    assert rows_per_chunk(4096, 512, 2048) == 1 and rows_per_chunk(16, 512, None) == 512


@pytest.mark.parametrize("width, n, batch_size, max_tokens", [
    (16, 2048, 512, 8192), (16, 1000, 512, 2048), (7, 10, 3, None), (4096, 3, 512, 2048), (5, 1, 4, 12)])
def test_rows_of_one_width_chunk_as_rows_of_mixed_widths_would(width, n, batch_size, max_tokens):
    """One width takes a shortcut past the row loop: the same chunks as the loop finds when one row
    of the flush is a token narrower (only the chunk holding it could differ, and does not here)."""
    same = chunk_bounds(np.full(n, width), batch_size, max_tokens)
    step = rows_per_chunk(width, batch_size, max_tokens)
    assert same == [(a, min(a + step, n)) for a in range(0, n, step)]
    mixed = np.full(n, width)
    mixed[0] = width - 1  # no shortcut: the row loop
    assert chunk_bounds(mixed, batch_size, max_tokens) == same


def test_the_cpu_token_budget_follows_the_models_width_and_the_threads(model):
    width = model.tok_emb.embedding_dim
    assert token_width(model) == width
    threads = torch.get_num_threads()
    try:
        budgets = {}
        for n in (1, 2, 8):
            torch.set_num_threads(n)
            budgets[n] = token_budget(model)
    finally:
        torch.set_num_threads(threads)
    # one thread's caches hold half the rows; past two threads nothing was measured: two's budget
    assert budgets == {1: CPU_ACTIVATION_BUDGET_PER_THREAD // width, 2: 2 * CPU_ACTIVATION_BUDGET_PER_THREAD // width,
                       8: 2 * CPU_ACTIVATION_BUDGET_PER_THREAD // width}


def test_the_token_width_of_a_factorized_embedding_is_its_layers_width():
    from transformers import AlbertConfig, AlbertModel

    albert = AlbertModel(AlbertConfig(vocab_size=50, embedding_size=8, hidden_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=64))
    assert albert.embeddings.word_embeddings.embedding_dim == 8
    assert token_width(albert) == 32
    assert token_budget(albert) == CPU_ACTIVATION_BUDGET_PER_THREAD * min(torch.get_num_threads(), 2) // 32


@pytest.mark.parametrize("value", ["many", 0, -5, 2.5])
def test_a_bad_max_batch_tokens_names_the_key(value):
    with pytest.raises(ValueError, match=r"explain\.shap\.max_batch_tokens must be auto, null or a positive"):
        ShapExplainer(max_batch_tokens=value)


def test_a_token_cap_changes_the_forwards_not_the_values(model):
    examples = [example(n, seed=i, example_id=i) for i, n in enumerate([18, 9, 23, 12, 16])]
    shapes: list[tuple[int, int]] = []
    original = model.forward

    def spy(input_ids=None, **kwargs):
        shapes.append(tuple(input_ids.shape))
        return original(input_ids=input_ids, **kwargs)

    uncapped = ShapExplainer(max_evals=200, seed=3, concurrent_examples=3, max_batch_tokens=None).explain(model, examples)
    model.forward = spy
    try:
        capped_explainer = ShapExplainer(max_evals=200, seed=3, concurrent_examples=3, max_batch_tokens=64)
        capped = capped_explainer.explain(model, examples)
    finally:
        del model.forward
    assert shapes and all(b * t <= 64 or b == 1 for b, t in shapes)
    assert capped_explainer.last_batch_stats.forward_calls > 20
    for x, y in zip(uncapped, capped):
        np.testing.assert_allclose(y.class_scores, x.class_scores, atol=1e-6, rtol=0)
    logits = predict_logits(model, [ex.ids for ex in examples], PAD, max_tokens=None)
    # raw logits reach |3.5|, where a float32 ulp is 2.4e-7: another batch shape may move the last bits
    np.testing.assert_allclose(predict_logits(model, [ex.ids for ex in examples], PAD, max_tokens=30), logits,
                               atol=1e-6, rtol=1e-5)


def test_same_width_chunks_and_tags_reach_the_forward_row_by_row():
    """A model read at each row's last position: chunks never mix widths (no padding), and each row
    arrives with the tag its task submitted it with."""
    seen = []

    def forward(rows, tags):
        seen.append(rows.shape)
        assert (rows != 0).all()  # never padded
        return (rows.sum(axis=1) * 100 + tags[:, 0])[:, None]  # (B, 1)

    def task(width, tag):
        def run(submit):
            rows = np.full((3, width), width, dtype=np.int64)
            return submit(rows, tag=[tag])[:, 0].tolist()
        return run

    batcher = RowBatcher(forward, pad_id=0, batch_size=4, same_width_chunks=True, tagged=True)
    results = batcher.run([task(2, 7), task(5, 8), task(2, 9)])
    assert results == [[407] * 3, [2508] * 3, [409] * 3]
    assert seen == [(4, 2), (2, 2), (3, 5)]  # six rows of width 2 in chunks of 4, then width 5
    with pytest.raises(ValueError, match="a tagged batcher needs a tag"):
        batcher.run([lambda submit: submit(np.ones((1, 2), dtype=np.int64))])
