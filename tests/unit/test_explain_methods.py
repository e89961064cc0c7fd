"""Attention rollout/flow/grad relevance, input x gradient, the random baseline and predict_proba."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glassworks.testing.flow import networkx_flow
from glassworks.explain.attention import (
    FlowExplainer,
    GradAttentionExplainer,
    RawAttentionExplainer,
    RolloutExplainer,
    attention_flow,
    attention_rollout,
    grad_weighted_relevance,
)
from glassworks.explain.baseline import RandomExplainer
from glassworks.explain.gradient import InputXGradientExplainer
from glassworks.explain.predict import predict_proba
from glassworks.explain.types import ExampleInput, Explanation

from tests.unit.tiny_explain_model import CLS, PAD, N_CLASSES, N_HEADS, N_LAYERS, VOCAB, tiny_model


def example(n_tokens: int, seed: int = 0, example_id: int = 0) -> ExampleInput:
    rng = np.random.default_rng(seed)
    ids = [CLS] + [int(i) for i in rng.integers(4, VOCAB, n_tokens - 1)]
    return ExampleInput(example_id, "", 0, ids, [str(i) for i in ids], [0] * n_tokens)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_model()


# --- pure functions -------------------------------------------------------------------------

# Two layers, two heads, two tokens. Head means: layer 1 [[.5,.5],[.5,.5]], layer 2 [[.2,.8],[.6,.4]].
LAYER_1 = np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])  # (H, T, T)
LAYER_2 = np.array([[[0.2, 0.8], [0.6, 0.4]], [[0.2, 0.8], [0.6, 0.4]]])  # (H, T, T)


def test_rollout_matches_hand_computed_two_layers():
    # With the residual: A'1 = [[.75,.25],[.25,.75]], A'2 = [[.6,.4],[.3,.7]];
    # R = A'2 @ A'1 = [[.6*.75+.4*.25, .6*.25+.4*.75], [.3*.75+.7*.25, .3*.25+.7*.75]].
    rollout = attention_rollout([LAYER_1, LAYER_2])
    np.testing.assert_allclose(rollout, [[0.55, 0.45], [0.40, 0.60]], atol=1e-12)
    # Without it: R = mean2 @ mean1 = [[.5,.5],[.5,.5]] (the order A'1 @ A'2 would give other rows).
    np.testing.assert_allclose(attention_rollout([LAYER_1, LAYER_2], add_residual=False), 0.5, atol=1e-12)
    # Torch input gives the same answer as numpy input.
    torch_rollout = attention_rollout([torch.tensor(LAYER_1), torch.tensor(LAYER_2)])
    np.testing.assert_allclose(torch_rollout, rollout)


def test_rollout_rows_stay_distributions():
    rng = np.random.default_rng(0)
    layers = [rng.dirichlet(np.ones(5), size=(3, 5)) for _ in range(4)]  # 4 x (H=3, T=5, T=5)
    np.testing.assert_allclose(attention_rollout(layers).sum(axis=1), 1.0)


def test_flow_on_one_layer_is_the_residual_attention_row():
    # One layer: the only paths into top [CLS] are single edges, capacity A'[0, j] = (.75, .25).
    np.testing.assert_allclose(attention_flow([LAYER_1], max_tokens=8), [0.75, 0.25], atol=1e-9)
    # Two layers: into top [CLS] at most .6 via token 0 and .4 via token 1 of layer 1; token 0 of the
    # input reaches those through .75 and .25: min(.6, .75) + min(.4, .25) = .85; token 1: .25 + .4 = .65.
    np.testing.assert_allclose(attention_flow([LAYER_1, LAYER_2], max_tokens=8), [0.85, 0.65], atol=1e-9)


@pytest.mark.parametrize(("n_layers", "n_tokens", "seed"), [(1, 4, 0), (2, 6, 1), (3, 9, 2), (4, 12, 3)])
def test_flow_matches_the_networkx_reference(n_layers, n_tokens, seed):
    rng = np.random.default_rng(seed)
    # Peaked rows (Dirichlet 0.3), as trained attention is: many small capacities, a few large.
    layers = [rng.dirichlet(np.full(n_tokens, 0.3), size=(2, n_tokens)) for _ in range(n_layers)]  # L x (H, T, T)
    np.testing.assert_allclose(attention_flow(layers), networkx_flow(layers), atol=1e-5)


def test_flow_handles_the_longest_inputs():
    # 6 layers x 128 tokens, MiniLM's depth at files' max_length: the old cap was 32 tokens.
    rng = np.random.default_rng(0)
    layers = [rng.dirichlet(np.full(128, 0.3), size=(2, 128)) for _ in range(6)]
    flows = attention_flow(layers)  # (T,)
    assert flows.shape == (128,) and np.all(flows >= 0) and np.all(flows <= 1 + 1e-6)
    with pytest.raises(ValueError, match="explain.flow.max_tokens=64"):
        attention_flow(layers, max_tokens=64)


def test_grad_relevance_hand_checkable():
    a1 = np.array([[[0.7, 0.3], [0.4, 0.6]]])  # (H=1, T, T)
    g1 = np.array([[[1.0, -2.0], [0.5, 3.0]]])
    # (g*a)^+ = [[.7, 0], [.2, 1.8]];  R = I + Ā = [[1.7, 0], [.2, 2.8]]
    np.testing.assert_allclose(grad_weighted_relevance([a1], [g1]), [[1.7, 0.0], [0.2, 2.8]])
    a2 = np.array([[[0.0, 0.5], [1.0, 0.0]]])
    g2 = np.array([[[3.0, 1.0], [-1.0, 2.0]]])
    # Ā2 = [[0, .5], [0, 0]];  R2 = R1 + Ā2 R1 = R1 + [[.1, 1.4], [0, 0]]
    np.testing.assert_allclose(grad_weighted_relevance([a1, a2], [g1, g2]), [[1.8, 1.4], [0.2, 2.8]])
    # Two heads are averaged after the ReLU: a negative head does not cancel a positive one.
    two_heads = grad_weighted_relevance([np.ones((2, 1, 1))], [np.array([[[2.0]], [[-2.0]]])])
    np.testing.assert_allclose(two_heads, [[2.0]])


# --- through the model -----------------------------------------------------------------------


def test_model_attention_rows_sum_to_one_and_padding_gets_zero(model):
    ids = torch.tensor([[CLS, 5, 6, 7, 8], [CLS, 9, 10, PAD, PAD]])  # (B, T)
    out = model(input_ids=ids, attention_mask=(ids != PAD).long(), output_attentions=True)
    assert len(out.attentions) == N_LAYERS
    for att in out.attentions:  # (B, H, T, T)
        assert att.shape == (2, N_HEADS, 5, 5)
        torch.testing.assert_close(att.sum(-1), torch.ones(2, N_HEADS, 5))
        assert torch.all(att[1, :, :, 3:] == 0)


def check_common(r: Explanation, ex: ExampleInput, model) -> None:
    probs = predict_proba(model, [ex.ids], PAD)[0]
    assert r.example_id == ex.example_id
    assert r.target == int(np.argmax(probs))
    # The explainers take the output from one padded forward over all their examples: float32 sums in
    # another order than this one-row forward, ~1e-6 apart on some CPUs.
    assert r.model_output == pytest.approx(float(probs.max()), abs=1e-5)
    assert r.scores.shape == (len(ex.ids),) and r.scores[0] == 0.0
    assert np.all(np.isfinite(r.scores)) and r.seconds > 0 and r.base_value is None


def test_raw_attention_is_cls_row_of_chosen_layer(model):
    ex = example(9)
    (r,) = RawAttentionExplainer(layer=0, keep_attentions=True).explain(model, [ex])
    check_common(r, ex, model)
    att = r.extras["attentions"]
    assert att.shape == (N_LAYERS, N_HEADS, 9, 9)
    np.testing.assert_allclose(r.extras["per_head"], att[0, :, 0, :], atol=1e-6)
    np.testing.assert_allclose(r.scores[1:], att[0, :, 0, 1:].mean(axis=0), atol=1e-6)
    assert r.extras["cls_score"] + r.scores.sum() == pytest.approx(1.0)
    assert "attentions" not in RawAttentionExplainer().explain(model, [ex])[0].extras
    with pytest.raises(ValueError, match="explain.raw_attention.layer"):
        RawAttentionExplainer(layer=N_LAYERS).explain(model, [ex])


def test_rollout_and_flow_explainers(model):
    ex = example(10, seed=2)
    (roll,) = RolloutExplainer(keep_attentions=True).explain(model, [ex])
    check_common(roll, ex, model)
    att = roll.extras["attentions"]
    np.testing.assert_allclose(roll.scores[1:], attention_rollout(list(att))[0, 1:], atol=1e-6)
    (flow,) = FlowExplainer().explain(model, [ex])
    check_common(flow, ex, model)
    assert np.all(flow.scores >= 0) and flow.scores.sum() > 0
    # A limit skips the longer example only: NaN scores and the reason, never an exception.
    short = example(5, seed=3, example_id=1)
    skipped, kept = FlowExplainer(max_tokens=9).explain(model, [ex, short])
    assert np.all(np.isnan(skipped.scores)) and "explain.flow.max_tokens=9" in skipped.extras["skipped"]
    check_common(kept, short, model)
    with pytest.raises(ValueError, match="explain.flow.max_tokens must be >= 2 or null"):
        FlowExplainer(max_tokens=1)


def test_flow_limit_is_inclusive_and_errors_name_the_function_and_model(model):
    ex = example(6, seed=4)
    (at_limit,) = FlowExplainer(max_tokens=6).explain(model, [ex])  # 6 tokens within a limit of 6
    check_common(at_limit, ex, model)
    with pytest.raises(ValueError, match="attention_rollout: need at least one layer"):
        attention_rollout([])
    good, bad = np.full((2, 3, 3), 1 / 3), np.full((2, 4, 4), 1 / 4)  # (H, T, T)
    with pytest.raises(ValueError, match="grad_weighted_relevance attentions: every layer"):
        grad_weighted_relevance([good, bad], [good, good])
    with pytest.raises(ValueError, match="grad_weighted_relevance grads: every layer"):
        grad_weighted_relevance([good, good], [good, bad])
    with pytest.raises(ValueError, match=r"attentions \(2, 2, 3, 3\) and grads \(2, 2, 4, 4\) differ in shape"):
        grad_weighted_relevance([good, good], [bad, bad])
    with pytest.raises(ValueError, match="attention_flow: need at least one layer"):
        attention_flow([])
    (kept,) = FlowExplainer(keep_attentions=True).explain(model, [ex])
    assert kept.extras["attentions"].shape == (N_LAYERS, N_HEADS, 6, 6)
    (raw,) = RawAttentionExplainer(layer=-1).explain(model, [ex])
    assert raw.extras["layer"] == -1 and raw.extras["per_head"].shape == (N_HEADS, 6)

    class NoAttentions(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, **kwargs):
            out = self.inner(**kwargs)
            out.attentions = None
            return out

    with pytest.raises(ValueError, match="NoAttentions returned no attentions"):
        RolloutExplainer().explain(NoAttentions().eval(), [ex])  # eval: leaves the shared model in eval mode
    assert not model.training


def test_an_explicit_pad_id_wins_over_the_models(model):
    # A RoBERTa-like vocabulary: id 0 (this model's PAD) is a real token, padding is id 1. The
    # target is predicted with the explainer's pad id, so the token 0 inside the text is not masked.
    ex = ExampleInput(0, "", 0, [CLS, 5, PAD, 7, 8], ["[CLS]", "5", "0", "7", "8"], [0] * 5)
    unmasked = predict_proba(model, [ex.ids], 1)[0]
    assert not np.allclose(unmasked, predict_proba(model, [ex.ids], PAD)[0])
    (r,) = RawAttentionExplainer(pad_id=1).explain(model, [ex])
    assert (r.target, r.model_output) == (int(unmasked.argmax()), pytest.approx(float(unmasked.max())))


def test_grad_attention_runs_under_no_grad_with_frozen_weights():
    model = tiny_model(seed=1)
    for p in model.parameters():
        p.requires_grad_(False)
    ex = example(8, seed=3)
    with torch.no_grad():
        (r,) = GradAttentionExplainer().explain(model, [ex])
    check_common(r, ex, model)
    assert np.all(r.scores >= 0) and r.scores[1:].sum() > 0  # (grad*A)^+ relevance is never negative
    assert r.extras["cls_score"] >= 1.0  # R starts from the identity
    assert not model.training


def test_input_x_gradient_is_first_order_in_the_embedding_scale(model):
    # sum_t e_t . grad_t = d/da logit(a * E) at a = 1: compare with a central difference.
    ex = example(7, seed=4)
    (r,) = InputXGradientExplainer().explain(model, [ex])
    check_common(r, ex, model)
    ids = torch.tensor([ex.ids])
    with torch.no_grad():
        emb = model.embed(ids).double()
        m64 = tiny_model().double()
        h = 1e-5
        up = m64(inputs_embeds=emb * (1 + h)).logits[0, r.target]
        down = m64(inputs_embeds=emb * (1 - h)).logits[0, r.target]
    derivative = float((up - down) / (2 * h))
    assert r.scores.sum() + r.extras["cls_score"] == pytest.approx(derivative, rel=1e-3, abs=1e-4)


def test_random_baseline_is_seeded_per_example(model):
    exs = [example(6, seed=s, example_id=s) for s in range(3)]
    a = RandomExplainer(seed=5).explain(model, exs)
    b = RandomExplainer(seed=5).explain(model, exs[::-1])[::-1]
    c = RandomExplainer(seed=6).explain(model, exs)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.scores, y.scores)
        check_common(x, exs[x.example_id], model)
    assert not np.allclose(a[0].scores, c[0].scores)
    assert np.all((a[0].scores[1:] >= 0) & (a[0].scores[1:] < 1))


# --- predict_proba ------------------------------------------------------------------------------


def test_predict_proba_batches_equal_one_big_forward(model):
    rng = np.random.default_rng(0)
    rows = [[CLS] + [int(i) for i in rng.integers(4, VOCAB, n)] for n in rng.integers(1, 12, 23)]
    width = max(map(len, rows))
    padded = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])  # (N, T)
    with torch.no_grad():
        logits = model(input_ids=padded, attention_mask=(padded != PAD).long()).logits
    expected = torch.softmax(logits.double(), dim=-1).numpy()
    in_batches = predict_proba(model, rows, PAD, batch_size=4)
    np.testing.assert_allclose(in_batches, expected, atol=1e-6)
    np.testing.assert_allclose(predict_proba(model, padded, PAD, batch_size=5), expected, atol=1e-6)
    np.testing.assert_allclose(in_batches.sum(axis=1), 1.0)
    one_by_one = np.concatenate([predict_proba(model, [r], PAD) for r in rows[:5]])
    np.testing.assert_allclose(one_by_one, in_batches[:5], atol=1e-6)  # padding never leaks in


def test_predict_proba_restores_training_mode():
    model = tiny_model().train()
    a = predict_proba(model, [[CLS, 5, 6]], PAD)
    b = predict_proba(model, [[CLS, 5, 6]], PAD)
    np.testing.assert_array_equal(a, b)  # dropout was off
    assert model.training
