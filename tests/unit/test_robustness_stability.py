"""Stability against toy explainers whose Spearman rho is known in closed form.

An input-independent explainer gives rho = 1 whatever the metric computes, so it cannot tell
``spearmanr(a, b)`` from ``spearmanr(a, a)``. These explainers read their input: on an original
they rank positions in order, on a near-copy they rank them in reverse (rho = -1) or swap the two
highest-ranked positions (rho = 1 - 12 / (n (n^2 - 1)) over the n compared positions).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glassworks.explain.predict import predict_proba
from glassworks.robustness import explanation_stability
from glassworks.explain.types import ExampleInput, Explanation

from tests.unit.tiny_explain_model import CLS, MASK, PAD, VOCAB, tiny_model

N_TOKENS = 9  # [CLS] + 8; the metric compares T - 2 = 7 positions ([CLS] and the edited one excluded)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model(seed=1)


def _examples(n: int) -> list[ExampleInput]:
    rng = np.random.default_rng(5)
    out = []
    for example_id in range(n):
        ids = [CLS] + [int(i) for i in rng.integers(MASK + 1, VOCAB, N_TOKENS - 1)]
        out.append(ExampleInput(example_id, " ".join(map(str, ids[1:])), 0, ids, [str(i) for i in ids], None))
    return out


def _explanation(name: str, example: ExampleInput, scores: np.ndarray) -> Explanation:
    return Explanation(method=name, example_id=example.example_id, target=0, scores=scores, base_value=None,
                       model_output=0.5, class_scores=None, seconds=0.0)


class ReadsItsInput:
    """Scores position p with p on an original input; on a near-copy (any id differs) it
    ``reverses`` the order or ``swaps`` the two top positions."""

    name = "toy"

    def __init__(self, originals: list[ExampleInput], change: str) -> None:
        self.originals = {e.example_id: list(e.ids) for e in originals}
        self.change = change
        self.seen_perturbed = 0
        self.perturbed: list[tuple[int, ...]] = []

    def explain(self, model, examples: list[ExampleInput]) -> list[Explanation]:
        out = []
        for e in examples:
            # (T,) ascending with position; a range below 1 (a rank metric must not care about scale)
            scores = np.arange(len(e.ids), dtype=np.float64) / 10
            if list(e.ids) != self.originals[e.example_id]:
                self.seen_perturbed += 1
                self.perturbed.append(tuple(e.ids))
                edited = [p for p, (a, b) in enumerate(zip(self.originals[e.example_id], e.ids)) if a != b]
                assert len(edited) == 1 and e.tokens[edited[0]] == str(e.ids[edited[0]]), "tokens follow the edit"
                if self.change == "reverse":
                    scores = -scores
                else:  # the last two positions are never edited: they are the top half by |score|
                    scores[[-1, -2]] = scores[[-2, -1]]
            out.append(_explanation(self.name, e, scores))
        return out


def _neighbours(token_id: int) -> list[int]:
    """Another ordinary id (never a special one)."""
    return [MASK + 1 + (token_id - MASK) % (VOCAB - MASK - 1)]


def _stability(model, change: str, n_examples: int = 6, **kwargs):
    examples = _examples(n_examples)
    explainer = ReadsItsInput(examples, change)
    base = predict_proba(model, [e.ids for e in examples], PAD)
    # The prediction check may reject some edits of the random tiny model.
    kwargs = {"n_perturbations": 2, **kwargs}
    if kwargs["n_perturbations"] is None:  # the function's default
        del kwargs["n_perturbations"]
    result = explanation_stability(model, examples, explainer.explain(model, examples), explainer, _neighbours,
                                   str, base, pad_id=PAD, **kwargs)  # fmt: skip
    return result, explainer


@pytest.fixture(scope="module")
def constant_model() -> torch.nn.Module:
    """Zero weights: equal logits, the same argmax for every input, so no edit is ever rejected."""
    model = tiny_model(seed=2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def test_stability_is_minus_one_when_every_perturbation_reverses_the_ranking(model):
    result, explainer = _stability(model, "reverse")
    assert result.n_perturbations > 0 and explainer.seen_perturbed == result.n_perturbations
    assert result.mean == pytest.approx(-1.0)
    assert result.per_example and all(v == pytest.approx(-1.0) for v in result.per_example.values())


def test_stability_equals_the_closed_form_rho_of_one_swap(model):
    result, _ = _stability(model, "swap")
    n = N_TOKENS - 2
    expected = 1 - 6 * 2 / (n * (n**2 - 1))  # one adjacent swap: sum d^2 = 2
    assert result.n_perturbations > 0
    assert result.mean == pytest.approx(expected) and expected < 0.97
    assert all(v == pytest.approx(expected) for v in result.per_example.values())


def test_defaults_seed_and_names(constant_model):
    examples = 4
    result, explainer = _stability(constant_model, "reverse", examples, n_perturbations=3)
    assert result.method == "toy" and result.n_rejected == 0
    # 3 perturbations per example by default, each explained once
    default, default_explainer = _stability(constant_model, "reverse", examples, n_perturbations=None)
    assert default.n_perturbations == explainer.seen_perturbed == 3 * examples
    assert default_explainer.perturbed == explainer.perturbed  # default seed 0
    _, seed1 = _stability(constant_model, "reverse", examples, n_perturbations=3, seed=1)
    assert sorted(seed1.perturbed) != sorted(explainer.perturbed)
    one, _ = _stability(constant_model, "reverse", examples, n_perturbations=1)
    assert one.n_perturbations == examples and one.mean == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="n_perturbations must be >= 1, got 0"):
        _stability(constant_model, "reverse", examples, n_perturbations=0)


def test_nothing_to_compare_is_nan_with_counts(constant_model):
    examples = _examples(3)
    explainer = ReadsItsInput(examples, "reverse")
    originals = explainer.explain(constant_model, examples)
    base = predict_proba(constant_model, [e.ids for e in examples], PAD)  # argmax 0 everywhere
    none = explanation_stability(constant_model, examples, originals, explainer, lambda token_id: [], str, base, pad_id=PAD)
    assert (none.method, none.per_example, none.n_perturbations, none.n_rejected) == ("toy", {}, 0, 0)
    assert np.isnan(none.mean)
    # every edit "changes the prediction" against base probabilities that say class 1
    says_class_1 = np.tile(np.eye(base.shape[1])[1], (len(examples), 1))  # (N, C)
    flipped = explanation_stability(constant_model, examples, originals, explainer, _neighbours, str, says_class_1, pad_id=PAD)
    assert (flipped.method, flipped.per_example, flipped.n_perturbations) == ("toy", {}, 0)
    assert flipped.n_rejected == 3 * 4 and np.isnan(flipped.mean)  # 4 candidates (bottom half of 8) each
