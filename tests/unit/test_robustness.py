"""Robustness stage on a real TransformerClassifier trained in-test on a task whose truth we know.

Toy task: the label is 1 iff the EVIDENCE token occurs among random noise tokens. A perfect
attribution puts all its score on EVIDENCE, so it must beat the random order on every test.
"""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from glassworks.explain.baseline import RandomExplainer
from glassworks.explain.gradient import InputXGradientExplainer
from glassworks.explain.predict import predict_proba
from glassworks.robustness import (
    ATTACK_COLUMNS,
    RANDOM_ORDER,
    NeighbourIndex,
    RobustnessRunner,
    SubstitutionAttack,
    attack_summary,
    explanation_stability,
    method_orders,
    perturbation_curves,
)
from glassworks.explain.types import ExampleInput, Explanation
from glassworks.robustness.curves import Curves
from glassworks.models.transformer import TransformerClassifier, TransformerConfig

PAD, UNK, CLS, MASK = 0, 1, 2, 3
SPECIAL_IDS = (PAD, UNK, CLS, MASK)  # as a TextTokenizer's special_ids
EVIDENCE = 4
NOISE = list(range(5, 40))
VOCAB = 40
BODY = 10  # tokens after [CLS]


def id_to_token(i: int) -> str:
    return {PAD: "[PAD]", UNK: "[UNK]", CLS: "[CLS]", MASK: "[MASK]", EVIDENCE: "EVIDENCE"}.get(int(i), f"w{int(i)}")


def _sample(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ids = rng.choice(NOISE, size=(n, BODY))  # (n, BODY)
    labels = rng.integers(0, 2, size=n)  # (n,)
    where = rng.integers(0, BODY, size=n)
    ids[labels == 1, where[labels == 1]] = EVIDENCE
    ids = np.concatenate([np.full((n, 1), CLS), ids], axis=1)  # (n, T)
    return torch.as_tensor(ids, dtype=torch.long), torch.as_tensor(labels, dtype=torch.long)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models gain nothing from intra-op threads, and on a busy 2-core box two threads spin
    # against each other (measured ~60x slower per step); restored for the other modules.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(one_thread) -> TransformerClassifier:
    torch.manual_seed(0)
    config = TransformerConfig(d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0, max_positions=16)
    net = config.build(vocab_size=VOCAB, n_classes=2, pad_id=PAD)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    net.train()
    for _ in range(250):  # ~2 s on 2 CPU cores
        x, y = _sample(64, rng)
        loss = F.cross_entropy(net(x, torch.ones_like(x)).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x, y = _sample(400, np.random.default_rng(1))
    acc = (predict_proba(net, x, PAD).argmax(axis=1) == y.numpy()).mean()
    assert acc > 0.97, f"the toy model did not learn the task (accuracy {acc:.3f})"
    return net


def _examples(n: int, seed: int, only_positive: bool = False) -> list[ExampleInput]:
    x, y = _sample(4 * n, np.random.default_rng(seed))
    out = []
    for row, label in zip(x.tolist(), y.tolist(), strict=True):
        if only_positive and label != 1:
            continue
        out.append(ExampleInput(example_id=len(out), text=" ".join(id_to_token(i) for i in row[1:]), label=label,
                                ids=row, tokens=[id_to_token(i) for i in row],
                                rationale=[int(i == EVIDENCE) for i in row]))  # fmt: skip
        if len(out) == n:
            break
    return out


class PerfectExplainer:
    """Score 1 on the evidence token, 0 elsewhere: the ground truth of the toy task."""

    name = "perfect"

    def explain(self, model, examples: list[ExampleInput]) -> list[Explanation]:
        probs = predict_proba(model, [e.ids for e in examples], PAD)
        return [
            Explanation(method=self.name, example_id=e.example_id, target=int(p.argmax()),
                        scores=np.array([float(i == EVIDENCE) for i in e.ids]), base_value=None,
                        model_output=float(p.max()), class_scores=None, seconds=0.0)  # fmt: skip
            for e, p in zip(examples, probs, strict=True)
        ]


class ForwardCounter:
    """Counts forward passes of a module through a hook (what n_model_calls must match)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self.rows = 0
        self.handle = module.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output) -> None:
        self.calls += 1
        ids = args[0] if args else kwargs["input_ids"]  # (B, T)
        self.rows += int(ids.shape[0])

    def close(self) -> None:
        self.handle.remove()


# --------------------------------------------------------------------------- ground truth
def test_replacing_the_evidence_token_flips_the_trained_model(model):
    examples = _examples(30, seed=2, only_positive=True)
    clean = predict_proba(model, [e.ids for e in examples], PAD).argmax(axis=1)
    assert (clean == 1).all()
    swapped = [[NOISE[0] if i == EVIDENCE else i for i in e.ids] for e in examples]
    assert (predict_proba(model, swapped, PAD).argmax(axis=1) == 0).all()


# --------------------------------------------------------------------------- curves
def test_deleting_the_evidence_first_drops_the_probability_more_than_random(model):
    examples = _examples(20, seed=3, only_positive=True)
    expls = PerfectExplainer().explain(model, examples)
    base = predict_proba(model, [e.ids for e in examples], PAD)
    perfect = perturbation_curves(model, examples, method_orders(examples, expls, "perfect", 0), base, k_max=10, mask_id=MASK, pad_id=PAD)
    rand = perturbation_curves(model, examples, method_orders(examples, None, RANDOM_ORDER, 0), base, k_max=10, mask_id=MASK, pad_id=PAD)

    assert perfect.deletion.shape == (20, 11) and perfect.insertion.shape == (20, 11)
    assert perfect.flipped.shape == (20, 11) and perfect.flipped.dtype == bool
    np.testing.assert_allclose(perfect.deletion[:, 0], base[:, 1])  # k=0: nothing masked
    np.testing.assert_allclose(perfect.insertion[:, -1], base[:, 1])  # k=n: everything kept
    assert perfect.flip_rate(1) == 1.0  # the evidence is gone at k=1
    assert perfect.mean_deletion()[1] < 0.05 < rand.mean_deletion()[1] - 0.5
    assert rand.flip_rate(1) < 0.5
    assert perfect.deletion_auc() < rand.deletion_auc()
    assert perfect.insertion_auc() > rand.insertion_auc()
    # Monotone-ish for random: masking more never raises the mean much.
    assert np.all(np.diff(rand.mean_deletion()) < 0.05)
    # Flip rate is a fraction and reaches 1 for the perfect order and stays there.
    assert np.all(perfect.flip_rates()[1:] == 1.0)


def test_auc_is_the_trapezoid_mean_over_k():
    # Hand-made curves of two examples over k = 0..3: means [1, .5, .25, 0] and [0, .5, .75, 1].
    deletion = np.array([[1.0, 0.6, 0.3, 0.0], [1.0, 0.4, 0.2, 0.0]])  # (N, K+1)
    curves = Curves(method="m", example_ids=[0, 1], deletion=deletion, insertion=1.0 - deletion,
                    flipped=deletion < 0.5)  # fmt: skip
    assert curves.k_max == 3
    assert curves.deletion_auc() == pytest.approx((1.0 / 2 + 0.5 + 0.25 + 0.0 / 2) / 3)
    assert curves.insertion_auc() == pytest.approx((0.0 / 2 + 0.5 + 0.75 + 1.0 / 2) / 3)
    assert curves.flip_rates().tolist() == [0.0, 0.5, 1.0, 1.0] and curves.flip_rate(1) == 0.5
    empty = Curves(method="m", example_ids=[], deletion=np.zeros((0, 4)), insertion=np.zeros((0, 4)),
                   flipped=np.zeros((0, 4), dtype=bool))  # fmt: skip
    for curve in (empty.mean_deletion(), empty.mean_insertion(), empty.flip_rates()):  # no example: NaN, not an error
        assert curve.shape == (4,) and np.isnan(curve).all()


def test_curve_k_is_capped_by_the_example_length(model):
    ex = _examples(1, seed=4, only_positive=True)[0]
    short = ExampleInput(example_id=9, text="", label=1, ids=ex.ids[:4], tokens=ex.tokens[:4], rationale=None)
    base = predict_proba(model, [short.ids], PAD)
    curves = perturbation_curves(model, [short], method_orders([short], None, RANDOM_ORDER, 0), base, k_max=10, mask_id=MASK, pad_id=PAD)
    # Past the 3 tokens the curve holds the all-masked (deletion) / all-kept (insertion) value.
    assert np.all(curves.deletion[0, 3:] == curves.deletion[0, 3])
    np.testing.assert_allclose(curves.insertion[0, 3:], base[0, int(base[0].argmax())])


# --------------------------------------------------------------------------- attack
def test_attack_guided_by_the_perfect_attribution_needs_fewer_edits_than_random(model):
    examples = _examples(20, seed=5, only_positive=True)
    expls = PerfectExplainer().explain(model, examples)
    attack = SubstitutionAttack(max_edits=5, n_candidates=10)
    perfect = attack.run(model, examples, method_orders(examples, expls, "perfect", 0), "perfect", pad_id=PAD,
                         special_ids=SPECIAL_IDS)
    rand = attack.run(model, examples, method_orders(examples, None, RANDOM_ORDER, 0), RANDOM_ORDER, pad_id=PAD,
                      special_ids=SPECIAL_IDS)

    assert all(r.success and r.n_edits == 1 for r in perfect)
    assert all(r.perturbed_ids[r.edited_positions[0]] != EVIDENCE for r in perfect)
    s_perfect, s_random = attack_summary(perfect), attack_summary(rand)
    assert s_perfect["attack_success"] == 1.0 and s_perfect["mean_edits"] == 1.0
    # Random visits noise words first: swapping one moves p(evidence class) by float rounding
    # only (< MIN_DROP), which is no edit, but it costs a model call.
    assert np.mean([r.n_model_calls for r in rand]) > 1.5 * np.mean([r.n_model_calls for r in perfect])
    assert s_random["attack_success"] <= s_perfect["attack_success"]
    assert s_perfect["model_calls_per_attack"] < s_random["model_calls_per_attack"]
    assert s_perfect["mean_prob_drop"] > 0.5


@pytest.mark.parametrize("concurrent", [1, 4])
def test_attack_respects_the_budget_and_spends_one_model_call_per_step(model, concurrent):
    examples = _examples(12, seed=6)
    attack = SubstitutionAttack(max_edits=2, n_candidates=7, concurrent_examples=concurrent)
    counter = ForwardCounter(model)
    try:
        base = predict_proba(model, [e.ids for e in examples], PAD)
        counter.calls = counter.rows = 0
        records = attack.run(model, examples, method_orders(examples, None, RANDOM_ORDER, 0), base_probs=base,
                             pad_id=PAD, special_ids=SPECIAL_IDS)
    finally:
        counter.close()
    assert len(records) == 12
    assert sum(r.n_rows for r in records) == counter.rows  # every row evaluated is accounted for
    if concurrent == 1:
        assert sum(r.n_model_calls for r in records) == counter.calls  # one forward per step
    else:  # four examples' steps share each forward
        assert attack.last_batch_stats.forward_calls == counter.calls
        assert counter.calls * 3 < sum(r.n_model_calls for r in records)
    for r in records:
        assert r.n_edits <= 2 and len(r.edited_positions) == r.n_edits
        assert r.n_rows == 7 * r.n_model_calls  # all candidates of a step in ONE model call
        assert r.n_model_calls <= BODY
        changed = [p for p, (a, b) in enumerate(zip(r.original_ids, r.perturbed_ids, strict=True)) if a != b]
        assert sorted(changed) == sorted(r.edited_positions) and 0 not in changed
        assert all(r.perturbed_ids[p] not in (PAD, UNK, CLS, MASK) for p in changed)
        assert r.prob_after <= r.prob_before
        if not r.success:
            assert r.n_edits == 2 or r.n_model_calls == BODY


def test_attacks_batched_across_examples_equal_one_at_a_time(model):
    # Different lengths, so one example's rows are padded beside another's in a shared forward.
    examples = [ExampleInput(e.example_id, e.text, e.label, e.ids[: 4 + i % 5], e.tokens[: 4 + i % 5], None)
                for i, e in enumerate(_examples(10, seed=9))]
    expls = PerfectExplainer().explain(model, examples)
    for orders in (method_orders(examples, expls, "perfect", 0), method_orders(examples, None, RANDOM_ORDER, 3)):
        alone = SubstitutionAttack(max_edits=3, n_candidates=6, concurrent_examples=1)
        batched = SubstitutionAttack(max_edits=3, n_candidates=6, concurrent_examples=3, batch_size=16)
        a = alone.run(model, examples, orders, pad_id=PAD, special_ids=SPECIAL_IDS)
        b = batched.run(model, examples, orders, pad_id=PAD, special_ids=SPECIAL_IDS)
        assert [r.example_id for r in b] == [r.example_id for r in a] == [e.example_id for e in examples]
        for x, y in zip(a, b, strict=True):
            # The same outcome; the substitute itself may differ between near-tied candidates (noise
            # words whose probabilities differ by ~1e-9, which a differently shaped matmul rounds apart).
            assert (x.edited_positions, x.success, x.n_model_calls, x.n_rows) == \
                   (y.edited_positions, y.success, y.n_model_calls, y.n_rows)
            assert y.prob_after == pytest.approx(x.prob_after, abs=1e-6) and y.seconds > 0
        assert sum(r.n_edits for r in a) > 0  # not trivially equal
        assert batched.last_batch_stats.forward_calls < sum(r.n_model_calls for r in a)
        assert alone.last_batch_stats is None


def test_attack_batch_size_splits_a_step_into_forwards(model):
    examples = _examples(3, seed=7)
    attack = SubstitutionAttack(max_edits=1, n_candidates=9, batch_size=4, concurrent_examples=1)
    counter = ForwardCounter(model)
    try:
        records = attack.run(model, examples, method_orders(examples, None, RANDOM_ORDER, 0), pad_id=PAD,
                             special_ids=SPECIAL_IDS)
    finally:
        counter.close()
    for r in records:
        assert r.n_model_calls == r.n_rows // 9  # one model call a step
    assert counter.calls == 1 + 3 * sum(r.n_model_calls for r in records)  # the clean forward, ceil(9 / 4) a step


def test_word_list_restricts_the_substitutes(model):
    examples = _examples(6, seed=8, only_positive=True)
    words = ["w30", "w31", "w32", "not-in-vocab"]
    vocab = {id_to_token(i): i for i in range(VOCAB)}
    attack = SubstitutionAttack(max_edits=3, n_candidates=20, word_list=words)
    expls = PerfectExplainer().explain(model, examples)
    records = attack.run(model, examples, method_orders(examples, expls, "perfect", 0), token_to_id=vocab,
                         pad_id=PAD, special_ids=SPECIAL_IDS)
    for r in records:
        assert all(r.perturbed_ids[p] in (30, 31, 32) for p in r.edited_positions)
        assert r.n_rows <= 3 * r.n_model_calls
    with pytest.raises(ValueError, match="token_to_id"):
        attack.neighbour_index(model, SPECIAL_IDS)
    with pytest.raises(ValueError, match="none of the 1 word_list"):
        SubstitutionAttack(word_list=["zzz"]).neighbour_index(model, SPECIAL_IDS, vocab.get)


def test_neighbours_exclude_specials_and_the_token_itself(model):
    index = NeighbourIndex(model.tok_emb.weight, n_candidates=5, special_ids=SPECIAL_IDS)
    for t in (EVIDENCE, 10, MASK):
        near = index(t)
        assert len(near) == 5 and t not in near and not set(near) & {PAD, UNK, CLS, MASK}
    w = F.normalize(model.tok_emb.weight.detach(), dim=1)
    sims = (w @ w[10]).numpy()
    assert sims[index(10)[0]] == pytest.approx(max(sims[i] for i in range(4, VOCAB) if i != 10), abs=1e-6)


@pytest.mark.parametrize(
    "kwargs, key",
    [({"max_edits": 0}, "max_edits"), ({"n_candidates": 0}, "n_candidates"), ({"batch_size": 0}, "batch_size"),
     ({"seed": -1}, "seed"), ({"word_list": []}, "word_list"), ({"max_steps": 0}, "max_steps"),
     ({"concurrent_examples": 0}, "concurrent_examples")],
)  # fmt: skip
def test_attack_arguments_are_validated(kwargs, key):
    with pytest.raises(ValueError, match=key):
        SubstitutionAttack(**kwargs)


# --------------------------------------------------------------------------- stability
def test_stability_keeps_predictions_and_is_perfect_for_an_input_independent_truth(model):
    examples = _examples(10, seed=9, only_positive=True)
    base = predict_proba(model, [e.ids for e in examples], PAD)
    index = NeighbourIndex(model.tok_emb.weight, n_candidates=5, special_ids=SPECIAL_IDS)
    explainer = PerfectExplainer()
    seen: list[ExampleInput] = []

    class Spy(PerfectExplainer):
        def explain(self, model, examples):
            seen.extend(examples)
            return super().explain(model, examples)

    result = explanation_stability(model, examples, explainer.explain(model, examples), Spy(), index, id_to_token,
                                   base, n_perturbations=2, pad_id=PAD)  # fmt: skip
    assert result.mean == pytest.approx(1.0)
    assert 0 < result.n_perturbations <= 20 and len(seen) == result.n_perturbations
    assert (predict_proba(model, [e.ids for e in seen], PAD).argmax(axis=1) == 1).all()
    for e in seen:
        original = examples[e.example_id]
        diff = [p for p, (a, b) in enumerate(zip(original.ids, e.ids, strict=True)) if a != b]
        assert len(diff) == 1 and original.rationale[diff[0]] == 0 and e.tokens[diff[0]] == id_to_token(e.ids[diff[0]])


# --------------------------------------------------------------------------- the stage
def _run(model, tmp_path: Path, examples, label_names, tokens=id_to_token, method="perfect", **runner_kwargs):
    perfect = PerfectExplainer()
    perfect.name = method
    explainers = {method: perfect, "random": RandomExplainer(seed=0), "input_x_gradient": InputXGradientExplainer()}
    explanations = {}
    for name, ex in explainers.items():
        explanations[name] = ex.explain(model, examples)
    runner = RobustnessRunner(curve_k=runner_kwargs.pop("curve_k", 10),
                              attack=SubstitutionAttack(max_edits=3, n_candidates=8), n_stability=2, mask_id=MASK, pad_id=PAD,
                              special_ids=SPECIAL_IDS, **runner_kwargs)  # fmt: skip
    result = runner.run(model, examples, explanations, explainers, tokens, label_names, tmp_path / "out")
    return runner, result, list(explanations)


def test_runner_reports_every_metric_and_writes_every_file(model, tmp_path):
    examples = _examples(12, seed=10)
    runner, result, methods = _run(model, tmp_path, examples, ["absent", "present"])

    expected = runner.metric_keys(methods)
    assert sorted(result.metrics) == sorted(expected)
    for m in [*methods, RANDOM_ORDER]:
        for k in (1, 2, 3, 5, 10):
            assert f"{m}/flip_rate_at_{k}" in result.metrics
        for key in ("deletion_auc", "insertion_auc", "attack_success", "mean_edits", "mean_prob_drop",
                    "model_calls_per_attack", "stability"):  # fmt: skip
            assert f"{m}/{key}" in result.metrics
    assert result.metrics["seconds_per_example"] > 0
    assert math.isnan(result.metrics[f"{RANDOM_ORDER}/stability"])  # no explainer behind the baseline
    assert -1 <= result.metrics["input_x_gradient/stability"] <= 1
    assert result.metrics["perfect/deletion_auc"] < result.metrics[f"{RANDOM_ORDER}/deletion_auc"]
    assert result.metrics["perfect/attack_success"] >= result.metrics[f"{RANDOM_ORDER}/attack_success"]

    out = result.out_dir
    for name in ("curves_deletion.png", "curves_insertion.png", "flip_rate.png", "attacks.parquet",
                 "adversarial_examples.html", "metrics.json"):  # fmt: skip
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "metrics.json").read_text())
    assert sorted(saved) == sorted(expected) and saved[f"{RANDOM_ORDER}/stability"] is None

    table = pd.read_parquet(out / "attacks.parquet")
    assert list(table.columns) == list(ATTACK_COLUMNS)
    assert len(table) == 12 * (len(methods) + 1)
    assert set(table["method"]) == {*methods, RANDOM_ORDER}
    assert (table["n_edits"] <= 3).all()
    row = table[(table["method"] == "perfect") & table["success"]].iloc[0]
    assert row["original_text"] == examples[int(row["example_id"])].text
    assert row["original_text"] != row["perturbed_text"] and len(row["edited_positions"]) == row["n_edits"]


def test_flip_rate_keys_are_capped_at_curve_k(model, tmp_path):
    examples = _examples(4, seed=11)
    runner, result, methods = _run(model, tmp_path, examples, ["a", "b"], curve_k=3)
    assert {k.split("_at_")[1] for k in result.metrics if "flip_rate_at_" in k} == {"1", "2", "3"}
    assert sorted(result.metrics) == sorted(runner.metric_keys(methods))


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(name for name, _ in attrs)

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)


def test_adversarial_html_is_inert_for_hostile_tokens_labels_and_method_names(model, tmp_path):
    script, img = "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>'
    hostile = {EVIDENCE: script, 7: img}
    for i in NOISE:
        hostile.setdefault(i, img if i % 2 else script)

    def tokens(i: int) -> str:
        return hostile.get(int(i), id_to_token(i))

    examples = _examples(8, seed=12, only_positive=True)
    _, result, _ = _run(model, tmp_path, examples, [img, script], tokens=tokens, method=script)
    assert result.metrics[f"{script}/attack_success"] > 0  # the page really shows attacks

    page = (result.out_dir / "adversarial_examples.html").read_text(encoding="utf-8")
    parser = _TagCollector()
    parser.feed(page)
    assert not {"script", "img", "iframe", "object", "embed", "svg", "link"} & set(parser.tags)
    assert not [a for a in parser.attrs if a.lower().startswith("on")]
    assert "http://" not in page and "https://" not in page and "<script" not in page.lower()
    shown = "".join(parser.text)
    assert script in shown and img in shown  # escaped, yet displayed verbatim


def test_examples_a_method_skipped_are_counted_not_failed(model, tmp_path, caplog):
    """Explanations a method's limit skipped (NaN scores) get no order: counted as
    <method>/n_skipped, never taken for "explained another class"."""
    from glassworks.explain.types import skipped_explanation

    examples = _examples(6, seed=12)
    perfect = PerfectExplainer()
    expls = perfect.explain(model, examples)
    expls[1] = skipped_explanation("perfect", examples[1], "too long for the test")
    runner = RobustnessRunner(curve_k=3, attack=SubstitutionAttack(max_edits=2, n_candidates=4), n_stability=0,
                              mask_id=MASK, pad_id=PAD, special_ids=SPECIAL_IDS)
    with caplog.at_level("WARNING"):
        result = runner.run(model, examples, {"perfect": expls}, {}, id_to_token, ["neg", "pos"], tmp_path / "out")
    assert result.metrics["perfect/n_skipped"] == 1 and result.metrics[f"{RANDOM_ORDER}/n_skipped"] == 0
    assert "another class" not in caplog.text and "no explainer named" not in caplog.text
    assert len(result.records["perfect"]) == 5


def test_the_console_line_says_no_attack_succeeded_instead_of_nan_edits(model, tmp_path, caplog):
    """Examples without the evidence token, substitutes drawn from noise words only: no edit can
    flip the prediction, mean_edits is NaN (it counts successes), and the console line says why
    rather than printing "edits nan"."""
    examples = [e for e in _examples(24, seed=13) if e.label == 0][:6]
    vocab = {id_to_token(i): i for i in range(VOCAB)}
    attack = SubstitutionAttack(max_edits=2, n_candidates=4, word_list=[id_to_token(i) for i in NOISE])
    runner = RobustnessRunner(curve_k=3, attack=attack, n_stability=0, mask_id=MASK, pad_id=PAD,
                              special_ids=SPECIAL_IDS)
    with caplog.at_level("INFO", logger="glassworks.robustness.runner"):
        result = runner.run(model, examples, {"perfect": PerfectExplainer().explain(model, examples)}, {},
                            id_to_token, ["absent", "present"], tmp_path / "out", token_to_id=vocab)
    assert result.metrics["perfect/attack_success"] == 0 and math.isnan(result.metrics["perfect/mean_edits"])
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("robustness perfect"))
    assert "edits – (no attack succeeded)" in line and "stability –" in line and "nan" not in line
