"""Faithfulness, plausibility and agreement on hand-built models and explanations; example selection."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from glassworks.explain.metrics import (average_precision, average_ranks, bin_key, bins_note, faithfulness,
                                        plausibility, rank_agreement, ranking, spearman)
from glassworks.explain.selection import select_examples
from glassworks.explain.types import ExampleInput, Explanation

PAD, CLS, MASK = 0, 2, 3
KEY = 7  # the one token the toy model looks at


class KeyTokenModel(nn.Module):
    """p(class 1) = sigmoid(6 * [KEY in input] - 3): everything hinges on one token."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))  # predict_proba reads the device from a parameter
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, **_):
        self.calls += 1
        present = ((input_ids == KEY) & (attention_mask.bool())).any(dim=1).float()  # (B,)
        z = 6.0 * present - 3.0
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(z), z], dim=1) + self.dummy)  # (B, 2)


def _example(example_id: int, ids: list[int], rationale: list[int] | None = None, label: int = 1) -> ExampleInput:
    return ExampleInput(
        example_id=example_id, text=" ".join(map(str, ids[1:])), label=label, ids=ids,
        tokens=["[CLS]"] + [f"t{i}" for i in ids[1:]], rationale=rationale,
    )  # fmt: skip


def _expl(method: str, example: ExampleInput, scores, target: int = 1) -> Explanation:
    return Explanation(
        method=method, example_id=example.example_id, target=target, scores=np.asarray(scores, dtype=float),
        base_value=None, model_output=0.0, class_scores=None, seconds=0.0,
    )  # fmt: skip


def _key_examples() -> list[ExampleInput]:
    # KEY at different positions; 10-20 tokens so several bins have k > 1.
    rows = [
        [CLS, 10, 11, KEY, 12, 13, 14, 15, 16, 17, 18],
        [CLS] + list(range(20, 35)) + [KEY],
        [CLS, KEY] + list(range(40, 52)),
    ]
    return [_example(i, ids) for i, ids in enumerate(rows)]


def _perfect(ex: ExampleInput) -> np.ndarray:
    scores = np.zeros(len(ex.ids))
    scores[1:] = np.linspace(0.1, 0.0, len(ex.ids) - 1)  # deterministic, below the key token
    scores[ex.ids.index(KEY)] = 1.0
    return scores


def test_faithfulness_perfect_attribution_is_maximal_and_beats_worst_and_random():
    model = KeyTokenModel()
    examples = _key_examples()
    drop = 1 / (1 + math.exp(-3.0)) - 1 / (1 + math.exp(3.0))  # p(class 1) with vs without the key

    perfect = faithfulness(model, examples, [_expl("perfect", e, _perfect(e)) for e in examples], MASK, PAD)
    # The key token is top-1: every bin removes it -> comprehensiveness is the full drop, always.
    assert perfect["comprehensiveness"] == pytest.approx(drop)
    assert perfect["comprehensiveness_at_1"] == pytest.approx(drop)
    assert perfect["sufficiency"] == pytest.approx(0.0, abs=1e-12)  # keeping top-k keeps the key token
    assert perfect["aopc"] == pytest.approx(drop)
    for f in (1, 5, 10, 20, 50):
        assert f"comprehensiveness_at_{f}" in perfect and f"sufficiency_at_{f}" in perfect

    worst = faithfulness(model, examples, [_expl("worst", e, -_perfect(e)) for e in examples], MASK, PAD)
    assert worst["comprehensiveness_at_1"] == pytest.approx(0.0, abs=1e-12)
    assert worst["sufficiency_at_1"] == pytest.approx(drop)

    rng = np.random.default_rng(0)
    noise = [_expl("random", e, rng.uniform(size=len(e.ids))) for e in examples]
    random = faithfulness(model, examples, noise, MASK, PAD)
    assert random["comprehensiveness"] < perfect["comprehensiveness"]
    assert random["sufficiency"] > perfect["sufficiency"]
    assert random["aopc"] < perfect["aopc"]


def test_faithfulness_is_one_batched_call_and_skips_nan():
    model = KeyTokenModel()
    examples = _key_examples()
    explanations = [_expl("m", e, _perfect(e)) for e in examples]
    explanations[1].scores[3] = np.nan
    out = faithfulness(model, examples, explanations, MASK, PAD, batch_size=10_000)
    assert model.calls == 1
    assert out["comprehensiveness"] > 0.9  # the NaN example is skipped, not averaged in as NaN
    all_nan = [_expl("m", e, np.full(len(e.ids), np.nan)) for e in examples]
    assert all(math.isnan(v) for v in faithfulness(model, examples, all_nan, MASK, PAD).values())


def test_faithfulness_bins_and_masking_never_touch_cls():
    seen: list[torch.Tensor] = []

    class Spy(KeyTokenModel):
        def forward(self, input_ids, attention_mask=None, **kw):
            seen.append(input_ids.clone())
            return super().forward(input_ids, attention_mask)

    ex = _example(0, [CLS, KEY, 5, 6])
    faithfulness(Spy(), [ex], [_expl("m", ex, [9.0, 1.0, 0.5, 0.2])], MASK, PAD, fractions=(0.5,))
    rows = torch.cat(seen)
    assert torch.all(rows[:, 0] == CLS)
    assert bin_key(0.01) == "1" and bin_key(0.025) == "2.5"
    assert ranking(np.array([100.0, 1.0, 3.0, 3.0])).tolist() == [2, 3, 1]  # [CLS] excluded, stable ties
    assert ranking(np.array([9, 0, 3, 2], dtype=np.uint8)).tolist() == [2, 3, 1]  # unsigned: -0 must not rank first


def test_faithfulness_short_texts_have_knowable_bins_and_aopc():
    # n = 3 body tokens, the key token ranked last: bin 0.7 masks round(2.1) = 2 tokens (the key
    # survives), AOPC runs k = 1..3 (only k = 3 removes the key). A text of [CLS] alone has
    # nothing to mask and is left out rather than turning the means into NaN.
    drop = 1 / (1 + math.exp(-3.0)) - 1 / (1 + math.exp(3.0))
    ex = _example(0, [CLS, 5, 6, KEY])
    alone = _example(1, [CLS])
    worst = [_expl("worst", ex, [0.0, 0.9, 0.5, 0.1]), _expl("worst", alone, [0.0])]
    out = faithfulness(KeyTokenModel(), [ex, alone], worst, MASK, PAD, fractions=(0.7,))
    assert out["comprehensiveness_at_70"] == pytest.approx(0.0, abs=1e-12)
    assert out["sufficiency_at_70"] == pytest.approx(drop)
    assert out["aopc"] == pytest.approx(drop / 3)


def test_faithfulness_nan_result_has_the_same_keys_and_warns_only_about_unexplained_nan(caplog):
    examples = _key_examples()
    finite = faithfulness(KeyTokenModel(), examples, [_expl("m", e, _perfect(e)) for e in examples], MASK, PAD)
    all_nan = [_expl("m", e, np.full(len(e.ids), np.nan)) for e in examples]
    assert sorted(faithfulness(KeyTokenModel(), examples, all_nan, MASK, PAD)) == sorted(finite)

    # One example the method skipped on purpose (extras["skipped"]: the runner warns about those),
    # one with NaN scores out of nowhere: only the second is worth this function's warning.
    expls = [_expl("m", e, _perfect(e)) for e in examples]
    expls[0].scores[:] = np.nan
    expls[0].extras["skipped"] = "too long"
    caplog.clear()
    with caplog.at_level("WARNING", logger="glassworks.explain.metrics"):
        faithfulness(KeyTokenModel(), examples, expls, MASK, PAD)
    assert not caplog.records
    expls[1].scores[2] = np.inf
    caplog.clear()
    with caplog.at_level("WARNING", logger="glassworks.explain.metrics"):
        faithfulness(KeyTokenModel(), examples, expls, MASK, PAD)
    assert [r.getMessage() for r in caplog.records] == [
        "faithfulness: method 'm' has non-finite scores on 1 of 3 examples; they are skipped"
    ]


def test_bins_note_counts_tokens_in_the_plural():
    # n = 20 (21 with [CLS]): 10% masks round(2.0) = 2 tokens, 12% round(2.4) = 2, 20% masks 4.
    note = bins_note((0.1, 0.12, 0.2), [21])
    assert "10%, 12% all mask 2 tokens" in note and "20%" not in note


def test_faithfulness_rejects_mismatched_lengths():
    ex = _example(0, [CLS, KEY, 5])
    with pytest.raises(ValueError, match="example_id 0"):
        faithfulness(KeyTokenModel(), [ex], [_expl("m", ex, [0.0, 1.0])], MASK, PAD)
    stranger = _example(5, [CLS, KEY, 5])
    with pytest.raises(ValueError, match="names example_id 5, which is not among the examples"):
        faithfulness(KeyTokenModel(), [ex], [_expl("m", stranger, [0.0, 1.0, 0.0])], MASK, PAD)


def test_plausibility_hand_cases():
    a = _example(0, [CLS, 5, 6, 7, 8], rationale=[0, 0, 1, 1, 0])
    b = _example(1, [CLS, 5, 6, 7], rationale=[0, 1, 0, 0])
    none = _example(2, [CLS, 5, 6], rationale=None)
    zeros = _example(3, [CLS, 5, 6], rationale=[0, 0, 0])
    perfect = [_expl("m", a, [0, 0.1, 0.9, 0.8, 0.2]), _expl("m", b, [5, 0.7, 0.1, 0.2])]
    out = plausibility(perfect + [_expl("m", none, [0, 1, 2]), _expl("m", zeros, [0, 1, 2])], [a, b, none, zeros])
    assert out == {"rationale_auprc": pytest.approx(1.0), "rationale_f1": pytest.approx(1.0)}

    # a: ranking 6,8(no),7 -> top-2 = {2, 4}: one hit of two -> F1 0.5; AP = (1 + 2/3) / 2
    half = plausibility([_expl("m", a, [0, 0.1, 0.9, 0.2, 0.8])], [a])
    assert half["rationale_f1"] == pytest.approx(0.5)
    assert half["rationale_auprc"] == pytest.approx((1 + 2 / 3) / 2)

    assert plausibility([_expl("m", none, [0, 1, 2])], [none]) == {}
    nan = plausibility([_expl("m", a, [np.nan] * 5)], [a])
    assert math.isnan(nan["rationale_auprc"]) and math.isnan(nan["rationale_f1"])


def test_rank_agreement():
    a = _example(0, [CLS, 5, 6, 7, 8])
    b = _example(1, [CLS, 5, 6, 7])
    by_method = {
        "shap": [_expl("shap", a, [0, 1, 2, 3, 4]), _expl("shap", b, [0, 3, 2, 1])],
        "rollout": [_expl("rollout", a, [9, 10, 20, 30, 40]), _expl("rollout", b, [0, 0.3, 0.2, 0.1])],  # same ranks
        "anti": [_expl("anti", a, [0, 4, 3, 2, 1]), _expl("anti", b, [0, 1, 2, 3])],
        "flat": [_expl("flat", a, [0, 1, 1, 1, 1]), _expl("flat", b, [np.nan] * 4)],
    }
    out = rank_agreement(by_method)
    assert sorted(out) == [
        "anti_vs_flat", "anti_vs_rollout", "anti_vs_shap", "flat_vs_rollout", "flat_vs_shap", "rollout_vs_shap",
    ]  # fmt: skip
    assert out["rollout_vs_shap"] == pytest.approx(1.0)
    assert out["anti_vs_shap"] == pytest.approx(-1.0)
    assert math.isnan(out["flat_vs_shap"])  # constant / NaN rankings have no correlation
    # A ranking whose scores span exactly 1 is not constant.
    spans_one = {"a": [_expl("a", b, [0, 1, 2, 3])], "b": [_expl("b", b, [0, 0, 0.5, 1])]}
    assert rank_agreement(spans_one) == {"a_vs_b": pytest.approx(1.0)}
    # An infinite score has no rank to agree with (Spearman would rank it first), and a text of
    # [CLS] alone has nothing to rank: both are left out, not errors.
    c = _example(2, [CLS, 5, 6, 7])
    alone = _example(3, [CLS])
    odd = {"a": [_expl("a", c, [0, 1, np.inf, 3]), _expl("a", alone, [0])],
           "b": [_expl("b", c, [0, 1, 2, 3]), _expl("b", alone, [0])]}  # fmt: skip
    assert math.isnan(rank_agreement(odd)["a_vs_b"])


def test_spearman_is_scipys_on_ties_and_every_length():
    from scipy.stats import rankdata, spearmanr

    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 16, 64, 257):
        for trial in range(40):
            a, b = rng.normal(size=n), rng.normal(size=n)
            if trial % 2:  # many ties
                a, b = np.round(a), np.round(2 * b)
            assert np.array_equal(average_ranks(a), rankdata(a))
            if np.ptp(a) and np.ptp(b):
                assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert spearman(np.arange(5.0), -np.arange(5.0)) == -1.0
    assert math.isnan(spearman(np.ones(4), np.arange(4.0)))  # a constant ranking has no correlation


def test_average_precision_is_sklearns_on_ties_and_every_length():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 7, 16, 64, 257):
        for trial in range(40):
            truth = (rng.random(n) < rng.uniform(0.05, 0.9)).astype(np.int64)
            truth[rng.integers(n)] = 1  # at least one positive, as every caller guarantees
            scores = rng.normal(size=n)
            if trial % 3 == 1:  # many ties, across the flags
                scores = np.round(scores)
            elif trial % 3 == 2:  # all tied
                scores = np.full(n, 0.5)
            assert average_precision(truth, scores) == pytest.approx(average_precision_score(truth, scores), abs=1e-12)
    assert average_precision(np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])) == 1.0
    assert average_precision(np.array([1, 0, 0]), np.array([0.1, 0.9, 0.5])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no positive"):
        average_precision(np.zeros(3), np.arange(3.0))
    with pytest.raises(ValueError, match="NaN"):
        average_precision(np.ones(2), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="shapes"):
        average_precision(np.ones(2), np.ones(3))


def test_rank_agreement_names_the_example_whose_rankings_differ_in_length():
    a, b = _example(0, [CLS, 5, 6, 7]), _example(0, [CLS, 5, 6])
    with pytest.raises(ValueError, match=r"example_id 0: methods 'x' and 'y' have scores of different lengths \(3 vs 2\)"):
        rank_agreement({"x": [_expl("x", a, [0, 1, 2, 3])], "y": [_expl("y", b, [0, 1, 2])]})


# ---------------------------------------------------------------------------------------- selection
def _split(n_per_class=(60, 30, 10), seed=0):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    rng = np.random.default_rng(seed)
    predictions = labels.copy()
    wrong = rng.choice(len(labels), size=12, replace=False)
    predictions[wrong] = (labels[wrong] + 1) % len(n_per_class)
    return pd.DataFrame({"text": [f"t{i}" for i in range(len(labels))], "label": labels}), predictions


def test_select_examples_deterministic_stratified_with_mistakes():
    frame, predictions = _split()
    first = select_examples(frame, predictions, n=12, seed=3)
    assert first == select_examples(frame, predictions, n=12, seed=3)
    assert first != select_examples(frame, predictions, n=12, seed=4)
    assert first == sorted(first) and len(set(first)) == 12
    labels = frame["label"].to_numpy()
    counts = np.bincount(labels[first], minlength=3)
    assert counts.tolist() == [4, 4, 4]  # the 10-row class is not crowded out by the 60-row one
    wrong = np.flatnonzero(predictions != labels)
    assert len(set(first) & set(wrong)) == 3  # 25% of 12


def test_select_examples_edge_cases():
    frame, predictions = _split()
    labels = frame["label"].to_numpy()
    assert select_examples(frame, predictions, n=500, seed=0) == list(range(len(frame)))
    assert select_examples(labels, labels, n=5, seed=0) == select_examples(list(labels), labels, n=5, seed=0)
    one = select_examples(labels, predictions, n=2, seed=1)  # 25% of 2 rounds to 0, still one mistake
    assert len(set(one) & set(np.flatnonzero(predictions != labels))) == 1
    assert len(select_examples(labels, predictions, n=12, seed=0, misclassified_fraction=0.0)) == 12
    assert not set(select_examples(labels, predictions, n=12, seed=0, misclassified_fraction=0.0)) & set(
        np.flatnonzero(predictions != labels)
    )
    with pytest.raises(ValueError, match="predictions"):
        select_examples(labels, predictions[:-1], n=3, seed=0)
    with pytest.raises(ValueError, match="label"):
        select_examples(pd.DataFrame({"text": ["a"]}), [0], n=1, seed=0)
