"""Explanations per generated token on a small random decoder (no training needed for the
properties tested): SHAP local accuracy, Exact = brute-force Shapley, every method's shape, the
evidence and faithfulness metrics, the table, the heatmap and the deletion curves."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from glassworks.data.lm_tasks import AgreementTask, LMExample, RecallTask
from glassworks.data.lm_vocab import WordVocab
from glassworks.explain.generation import GENERATION_METHODS, GenerationExplainer, GenerationShap
from glassworks.explain.generation_metrics import evidence_scores, faithfulness_scores, summarise
from glassworks.explain.generation_plots import generation_heatmap_png
from glassworks.explain.generation_table import TABLE_COLUMNS, attribution_matrix, attribution_table
from glassworks.explain.generation_target import GenerationStep, prepare_generation, step_outputs
from glassworks.models.decoder import DecoderConfig
from glassworks.robustness.generation_deletion import deletion_curves, deletion_metrics

MASK = 3


@pytest.fixture(scope="module")
def vocab() -> WordVocab:
    return WordVocab.from_symbols(RecallTask().symbols() + AgreementTask().symbols())


@pytest.fixture(scope="module")
def model(vocab):
    torch.manual_seed(0)
    # Larger init than training's so outputs vary visibly with the input.
    m = DecoderConfig(d_model=32, n_heads=2, n_layers=2, d_ff=64, max_positions=32).build(len(vocab), 0)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(10.0) if p.dim() > 1 else None
    return m.eval()


@pytest.fixture(scope="module")
def generated(model, vocab):
    # Short prompts (<= 8 words + 1 generated token): Exact's 2**M evaluations stay small.
    task = RecallTask(n_train=1, n_validation=1, n_test=2, min_pairs=2, max_pairs=3, seed=1)
    examples = task.load().splits["test"]
    return [prepare_generation(model, vocab, e, i, max_new_tokens=2) for i, e in enumerate(examples)]


@pytest.fixture(scope="module")
def attributions(model, generated):
    explainer = GenerationExplainer(shap_config=GenerationShap(max_evals=200, mask_id=MASK))
    return explainer.explain(model, [s for e in generated for s in e.steps])


def _brute_force_shapley(model, step: GenerationStep) -> np.ndarray:
    ids = np.asarray(step.prefix_ids)
    m = len(ids) - 1
    subsets = list(itertools.product([0, 1], repeat=m))
    rows = np.tile(ids, (len(subsets), 1))
    for r, keep in enumerate(subsets):
        rows[r, 1:][np.asarray(keep) == 0] = MASK
    values = dict(zip(subsets, step_outputs(model, rows, step)))
    phi = np.zeros(m)
    for i in range(m):
        for keep in subsets:
            if keep[i]:
                continue
            size = sum(keep)
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            with_i = keep[:i] + (1,) + keep[i + 1 :]
            phi[i] += weight * (values[with_i] - values[keep])
    return phi


def test_generation_follows_the_greedy_argmax(model, generated):
    for example in generated:
        for step in example.steps:
            logits = model(torch.tensor([step.prefix_ids])).logits[0, -1]
            assert int(logits.argmax()) == step.token_id


def test_every_method_scores_every_prefix_position(attributions, generated):
    n_steps = sum(len(e.steps) for e in generated)
    assert len(attributions) == n_steps * len(GENERATION_METHODS)
    steps = {(s.example_id, s.step): s for e in generated for s in e.steps}
    for a in attributions:
        assert a.scores.shape == (steps[(a.example_id, a.step)].n_positions,)
        assert np.all(np.isfinite(a.scores))
        assert a.scores[0] == 0.0  # [BOS]


@pytest.mark.parametrize("algorithm", ["partition", "exact"])
def test_shap_local_accuracy_per_generated_token(model, generated, algorithm):
    shap_config = GenerationShap(algorithm=algorithm, max_evals=300, mask_id=MASK)
    for example in generated:
        for step in example.steps:
            scores, base, _ = shap_config.explain(model, step)
            full = step_outputs(model, np.asarray([step.prefix_ids]), step)[0]
            assert abs(scores.sum() + base - full) <= 1e-6
            masked = np.full(step.n_positions, MASK)
            masked[0] = step.prefix_ids[0]
            assert abs(base - step_outputs(model, masked[None], step)[0]) <= 1e-6


def test_exact_equals_brute_force_shapley_values(model, vocab):
    prompt = "k1 v2 k3 v4 ? k1".split()
    generated = prepare_generation(model, vocab, LMExample(prompt, ["v2"], [[1, 2, 6]]), 0)
    step = generated.steps[0]
    contrastive = GenerationStep(0, 0, step.prefix_ids, step.token_id, foil_id=vocab.token_to_id("v4"))
    for s in (step, contrastive):
        scores, _, _ = GenerationShap(algorithm="exact", mask_id=MASK).explain(model, s)
        np.testing.assert_allclose(scores[1:], _brute_force_shapley(model, s), atol=1e-9)


def test_exact_refuses_long_prefixes_with_the_key(model, generated):
    with pytest.raises(ValueError, match="exact_max_positions"):
        GenerationShap(algorithm="exact", exact_max_positions=3).explain(model, generated[0].steps[0])


def test_evidence_scores_on_known_rankings():
    scores = np.array([9.0, 0.1, 0.9, 0.2, 0.5])  # [BOS] is ignored even with the top score
    assert evidence_scores(scores, [2]) == {"hit_at_1": 1.0, "mrr": 1.0, "auprc": 1.0}
    second = evidence_scores(scores, [4])
    assert second["hit_at_1"] == 0.0 and second["mrr"] == 0.5 and second["auprc"] == 0.5


def test_faithfulness_of_shap_beats_reversed_shap(model, generated):
    step = generated[0].steps[0]
    scores, _, _ = GenerationShap(max_evals=300, mask_id=MASK).explain(model, step)
    good = faithfulness_scores(model, step, scores, MASK)
    bad = faithfulness_scores(model, step, -scores, MASK)
    assert good["comprehensiveness"] > bad["comprehensiveness"]
    assert good["sufficiency"] < bad["sufficiency"]


def test_summary_has_every_method_and_gold_counts(model, generated, attributions):
    steps = [s for e in generated for s in e.steps]
    summary = summarise(model, steps, attributions, MASK)
    assert set(summary) == set(GENERATION_METHODS)
    n_gold = sum(1 for s in steps if s.gold)
    for row in summary.values():
        assert row["n_gold_steps"] == n_gold
        assert {"comprehensiveness", "sufficiency", "seconds_per_step"} <= set(row)
        if n_gold:
            assert 0.0 <= row["hit_at_1"] <= 1.0 and 0.0 < row["mrr"] <= 1.0


def test_table_and_matrix(generated, attributions, vocab):
    table = attribution_table(generated, attributions, vocab)
    assert tuple(table.columns) == TABLE_COLUMNS
    n_rows = sum(s.n_positions for e in generated for s in e.steps) * len(GENERATION_METHODS)
    assert len(table) == n_rows
    first = generated[0]
    rows = table[(table.example == 0) & (table.step == 0) & (table.method == "shap")]
    assert rows.source_token.tolist() == [vocab.id_to_token(i) for i in first.steps[0].prefix_ids]
    assert rows.gold.tolist() == [p in (first.steps[0].gold or []) for p in range(len(rows))]
    matrix = attribution_matrix(first, attributions, "shap")
    assert matrix.shape == (len(first.steps), len(first.prompt_ids) + len(first.generated_ids))
    if len(first.steps) > 1:
        assert np.isnan(matrix[0, -1]) and np.isfinite(matrix[-1, len(first.prompt_ids)])


def test_heatmap_png(tmp_path, generated, attributions, vocab):
    path = generation_heatmap_png(generated[0], attributions, vocab, tmp_path / "ex0.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deletion_curves_start_at_the_full_probability(model, generated, attributions):
    steps = [s for e in generated for s in e.steps]
    curves = deletion_curves(model, steps, attributions, MASK, max_positions=4)
    assert set(curves) == set(GENERATION_METHODS)
    start = np.mean([math.exp(step_outputs(model, np.asarray([s.prefix_ids]),
                                           GenerationStep(0, 0, s.prefix_ids, s.token_id))[0]) for s in steps])
    for curve in curves.values():
        assert curve.probabilities.shape == (5,)
        assert curve.probabilities[0] == pytest.approx(start)
    metrics = deletion_metrics(curves)
    assert "shap/deletion_auc_ratio" in metrics and "random_order/deletion_auc_ratio" not in metrics


def test_prompt_longer_than_the_context_is_refused(model, vocab):
    long = LMExample(["k1"] * 40, ["v1"])
    with pytest.raises(ValueError, match="context of 32 positions"):
        prepare_generation(model, vocab, long, 7)


def test_contrastive_steps_use_the_foil(model, vocab):
    example = AgreementTask(n_train=1, n_validation=1, n_test=1).load().splits["test"][0]
    g = prepare_generation(model, vocab, example, 0)
    step = g.steps[0]
    assert step.foil_id is not None and step.foil_id != step.token_id
    out = step_outputs(model, np.asarray([step.prefix_ids]), step)[0]
    logp = model(torch.tensor([step.prefix_ids])).logits[0, -1].log_softmax(-1)
    assert out == pytest.approx(float(logp[step.token_id] - logp[step.foil_id]), abs=1e-5)


@pytest.mark.parametrize("algorithm", ["partition", "exact"])
def test_steps_explained_together_equal_one_at_a_time(model, vocab, generated, algorithm):
    """Masked prefixes of many steps (several widths, some contrastive) share forwards, each row
    scored for its own step's token: the values of explaining one step at a time."""
    agreement = AgreementTask(n_train=1, n_validation=1, n_test=2).load().splits["test"]
    steps = [s for e in generated for s in e.steps]
    steps += [s for i, e in enumerate(agreement) for s in prepare_generation(model, vocab, e, 10 + i).steps]
    assert len({s.n_positions for s in steps}) >= 3 and any(s.foil_id is not None for s in steps)
    together = GenerationShap(algorithm=algorithm, max_evals=300, mask_id=MASK, concurrent_steps=16)
    alone = GenerationShap(algorithm=algorithm, max_evals=300, mask_id=MASK, concurrent_steps=1)
    for (a_scores, a_base, a_extras), (b_scores, b_base, b_extras) in zip(
            together.explain_many(model, steps), alone.explain_many(model, steps), strict=True):
        np.testing.assert_allclose(a_scores, b_scores, rtol=0, atol=1e-6)
        assert abs(a_base - b_base) <= 1e-6 and a_extras["n_evals"] == b_extras["n_evals"]


def test_explainer_times_shap_across_the_steps_it_shares(model, generated, attributions):
    steps = [s for e in generated for s in e.steps]
    shap_rows = [a for a in attributions if a.method == "shap"]
    assert [(a.example_id, a.step) for a in shap_rows] == [(s.example_id, s.step) for s in steps]
    assert len({a.seconds for a in shap_rows}) == 1 and shap_rows[0].seconds > 0


def test_a_bad_concurrent_steps_names_the_key():
    from glassworks.explain.generation import GenerationMethodConfig
    from glassworks.validation import ConfigError

    with pytest.raises(ValueError, match=r"explain.shap.concurrent_steps must be >= 1, got 0"):
        GenerationShap(concurrent_steps=0)
    with pytest.raises(ConfigError, match="concurrent_steps"):
        GenerationMethodConfig(method="shap", concurrent_steps=0)
