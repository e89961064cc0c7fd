"""Benchmark of the robustness stage on a tiny trained Transformer (CPU, seconds).

Prints, measured side by side in one process:

* the stage's time per example (curves + attacks + stability for every method + random order)
  and forward passes per attack;
* the attack as the stage runs it (all candidates of a step in ONE model call, 16 examples'
  calls gathered into shared forward passes) against the same attack one example at a time
  (one forward a step) and a naive attack that runs one forward pass per candidate — same greedy
  algorithm, same outcomes (checked), so the ratios are the cost of not batching.

Run: ``python bench/bench_robustness.py [--examples 32] [--candidates 20] [--tokens 24] [--threads 1]``
(``--tokens 64``: real reviews' length, where a search visits ~2.7x the words of the default's).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.results import emit, paired  # noqa: E402
from glassworks.explain.attention import RolloutExplainer  # noqa: E402
from glassworks.explain.gradient import InputXGradientExplainer  # noqa: E402
from glassworks.explain.predict import predict_proba  # noqa: E402
from glassworks.robustness import (  # noqa: E402
    RANDOM_ORDER,
    RobustnessRunner,
    SubstitutionAttack,
    attack_summary,
    method_orders,
)
from glassworks.explain.types import ExampleInput  # noqa: E402
from glassworks.models.transformer import TransformerConfig  # noqa: E402

PAD, CLS, MASK, EVIDENCE = 0, 2, 3, 4
SPECIAL_IDS = (0, 1, 2, 3)  # [PAD] [UNK] [CLS] [MASK], as in id_to_token below
VOCAB = 200
NOISE = np.arange(6, VOCAB)


def id_to_token(i: int) -> str:
    return {0: "[PAD]", 1: "[UNK]", 2: "[CLS]", 3: "[MASK]", EVIDENCE: "good", 5: "bad"}.get(int(i), f"w{int(i)}")


def sample(n: int, body: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` rows of [CLS] + `body` words; label 1 iff "good" occurs; label-0 rows get a decoy "bad" half the time."""
    ids = rng.choice(NOISE, size=(n, body))
    labels = rng.integers(0, 2, size=n)
    where = rng.integers(0, body, size=n)
    ids[np.arange(n), where] = np.where(labels == 1, EVIDENCE, np.where(rng.random(n) < 0.5, 5, ids[np.arange(n), where]))
    ids = np.concatenate([np.full((n, 1), CLS), ids], axis=1)  # (n, T)
    return torch.as_tensor(ids), torch.as_tensor(labels)


def train(steps: int, body: int) -> torch.nn.Module:
    torch.manual_seed(0)
    config = TransformerConfig(d_model=64, n_heads=4, n_layers=2, d_ff=128, dropout=0.0, max_positions=body + 1)
    model = config.build(vocab_size=VOCAB, n_classes=2, pad_id=PAD)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    model.train()
    for _ in range(steps):
        x, y = sample(64, body, rng)
        loss = F.cross_entropy(model(x, torch.ones_like(x)).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


class NaiveAttack(SubstitutionAttack):
    """The same greedy attack, one example at a time and one forward pass per candidate row."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs, concurrent_examples=1)

    def _evaluate(self, model, rows, pad_id):
        return np.concatenate([predict_proba(model, row[None, :], pad_id=pad_id) for row in rows])  # (R, C)


class ForwardCounter:
    """Forward passes of a module (a hook), whoever makes them."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        module.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        self.calls += 1


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=24, help="words an example (after [CLS])")
    parser.add_argument("--max-edits", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the stage's attack vs one at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny models: 1 is fastest)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    model, train_s = timed(lambda: train(args.train_steps, args.tokens))
    x, y = sample(args.examples, args.tokens, np.random.default_rng(1))
    acc = float((predict_proba(model, x, PAD).argmax(axis=1) == y.numpy()).mean())
    examples = [
        ExampleInput(example_id=i, text=" ".join(id_to_token(t) for t in row[1:]), label=int(label), ids=row,
                     tokens=[id_to_token(t) for t in row], rationale=[int(t == EVIDENCE) for t in row])  # fmt: skip
        for i, (row, label) in enumerate(zip(x.tolist(), y.tolist(), strict=True))
    ]
    print(f"tiny model: d_model=64, 2 layers, vocab {VOCAB}, {args.tokens + 1} tokens/example, "
          f"trained {args.train_steps} steps in {train_s:.1f} s, accuracy {acc:.3f} on {len(examples)} examples; "
          f"torch threads {torch.get_num_threads()}")  # fmt: skip

    # ---- the whole stage
    # The runner adds the random-order baseline itself.
    explainers = {e.name: e for e in (InputXGradientExplainer(), RolloutExplainer())}
    explanations = {name: e.explain(model, examples) for name, e in explainers.items()}
    attack = SubstitutionAttack(max_edits=args.max_edits, n_candidates=args.candidates)
    runner = RobustnessRunner(curve_k=10, attack=attack, n_stability=3, mask_id=MASK, pad_id=PAD, special_ids=SPECIAL_IDS)
    with tempfile.TemporaryDirectory() as tmp:
        result, stage_s = timed(lambda: runner.run(model, examples, explanations, explainers, id_to_token,
                                                   ["neg", "pos"], Path(tmp)))  # fmt: skip
    m = result.metrics
    print(f"\nrobustness stage: {len(examples)} examples x {len(explanations) + 1} methods in {stage_s:.2f} s "
          f"-> {m['seconds_per_example'] * 1000:.1f} ms/example (curves + attacks + stability)\n")  # fmt: skip
    header = f"{'method':<18}{'del AUC':>9}{'ins AUC':>9}{'flip@1':>8}{'success':>9}{'edits':>7}{'p drop':>8}{'fwd/attack':>11}{'stability':>10}"
    print(header)
    print("-" * len(header))
    for method in [*explanations, RANDOM_ORDER]:
        g = lambda k: m[f"{method}/{k}"]  # noqa: E731
        print(f"{method:<18}{g('deletion_auc'):>9.3f}{g('insertion_auc'):>9.3f}{g('flip_rate_at_1'):>8.2f}"
              f"{g('attack_success'):>9.2f}{g('mean_edits'):>7.2f}{g('mean_prob_drop'):>8.3f}"
              f"{g('model_calls_per_attack'):>11.1f}{g('stability'):>10.3f}")  # fmt: skip

    # ---- batched vs one example at a time vs naive, same orders, same examples, interleaved
    one_at_a_time = SubstitutionAttack(max_edits=args.max_edits, n_candidates=args.candidates, concurrent_examples=1)
    naive = NaiveAttack(max_edits=args.max_edits, n_candidates=args.candidates)
    neighbours = attack.neighbour_index(model, SPECIAL_IDS)
    base = predict_proba(model, [e.ids for e in examples], PAD)
    counter = ForwardCounter(model)
    print(f"\nattack: as the stage runs it ({attack.concurrent_examples} examples at once) vs one example at a time "
          f"(one forward a step), medians of {args.repeats} interleaved rounds (alone/stage: the median of the "
          f"rounds' ratios), vs naive (one forward a candidate, once), {args.candidates} candidates")
    header = (f"{'order':<18}{'stage s':>9}{'alone s':>9}{'naive s':>9}{'alone/stage':>12}{'naive/stage':>12}"
              f"{'fwd stage':>11}{'fwd alone':>11}{'fwd naive':>11}{'same outcome':>14}")
    print(header)
    print("-" * len(header))
    ratios: dict[str, float] = {}
    absolute: dict[str, float] = {"stage_s_per_example": m["seconds_per_example"], "train_s": train_s,
                                  "tokens_per_example": args.tokens + 1,
                                  "accuracy": acc, "load_average": os.getloadavg()[0]}

    def measured(variant, orders, method):
        counter.calls = 0
        records, seconds = timed(lambda: variant.run(model, examples, orders, method, pad_id=PAD, base_probs=base,
                                                     neighbours=neighbours))
        return records, seconds, counter.calls

    for method, expls in (("input_x_gradient", explanations["input_x_gradient"]), (RANDOM_ORDER, None)):
        orders = method_orders(examples, expls, method, 0)
        # The stage's attack and the one at a time: `--repeats` rounds, alternating which goes
        # first, each ratio taken within a round (a drifting host hits both alike), the median
        # counts; the naive one (4-10x slower) once. The floor: as many rows as the attack scores,
        # of the same width, as plain forwards of 512 rows (token-capped as the stage's are).
        variants = {"stage": attack, "alone": one_at_a_time}
        records, forwards, rounds = {}, {}, []
        for r in range(args.repeats):
            seconds = {}
            for name in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                records[name], seconds[name], forwards[name] = measured(variants[name], orders, method)
            if r == 0:
                floor_rows = np.resize(x.numpy(), (sum(rec.n_rows for rec in records["stage"]), x.shape[1]))  # (R, T)
            seconds["floor"] = timed(lambda: predict_proba(model, floor_rows, PAD))[1]
            rounds.append(seconds)
        (fast, fast_f), (alone, alone_f) = ((records[k], forwards[k]) for k in variants)
        fast_s, alone_s = (statistics.median(r[k] for r in rounds) for k in variants)
        alone_ratio, alone_low, alone_high = paired(rounds, "alone", "stage")
        floor_ratio, floor_low, floor_high = paired(rounds, "stage", "floor")
        slow, slow_s, slow_f = measured(naive, orders, method)
        # Same outcome, not bit-identical ids: a batched matmul rounds differently from a one-row one,
        # which can swap near-tied candidates whose probabilities differ by ~1e-9.
        same = all(a.success == b.success and a.n_edits == b.n_edits and a.edited_positions == b.edited_positions
                   and abs(a.prob_after - b.prob_after) < 1e-6
                   for other in (alone, slow) for a, b in zip(fast, other, strict=True))  # fmt: skip
        print(f"{method:<18}{fast_s:>9.3f}{alone_s:>9.3f}{slow_s:>9.3f}{alone_ratio:>11.2f}x{slow_s / fast_s:>11.1f}x"
              f"{fast_f:>11d}{alone_f:>11d}{slow_f:>11d}{str(same):>14}")
        ratios[f"one_at_a_time_over_stage_attack_{method}"] = alone_ratio
        absolute[f"one_at_a_time_over_stage_attack_{method}_lowest"] = alone_low
        absolute[f"one_at_a_time_over_stage_attack_{method}_highest"] = alone_high
        ratios[f"naive_over_stage_attack_{method}"] = slow_s / fast_s
        absolute[f"forwards_stage_{method}"] = fast_f
        absolute[f"forwards_one_at_a_time_{method}"] = alone_f
        absolute[f"forwards_naive_{method}"] = slow_f
        absolute[f"same_outcome_{method}"] = same
        s = attack_summary(fast)
        ratios[f"stage_attack_over_floor_{method}"] = floor_ratio
        print(f"{'':<18}success {s['attack_success']:.2f}, mean edits {s['mean_edits']:.2f}, "
              f"{s['model_calls_per_attack']:.1f} model calls/attack; {len(floor_rows)} rows, the stage's attack "
              f"{floor_ratio:.2f}x their plain forwards [{floor_low:.2f}, {floor_high:.2f}]")  # fmt: skip
    emit("robustness", ratios, absolute)


if __name__ == "__main__":
    main()
