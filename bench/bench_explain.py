"""Explain-stage benchmark: python bench/bench_explain.py [--examples 20] [--max-evals 500]

Prints, measured side by side in this one process on the same model and inputs:
1. our SHAP stage vs its floor: the same number of masked evaluations pushed through the model
   as plain batched forward passes (ratio; aim <= 1.5x);
2. our SHAP stage vs shap used as its docs show for text: a function of strings with
   ``shap.maskers.Text`` and the default batch size, same max_evals (speed-up; aim >= 5x);
3. seconds per example of every method at 16 / 64 / 256 tokens.
numba compiles shap's kernels on first use; a warm-up call runs before anything is timed.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import shap
import torch

from glassworks.data.tokenizer import TextTokenizer, TokenizerConfig
from glassworks.explain.attention import (FlowExplainer, GradAttentionExplainer, RawAttentionExplainer,
                                          RolloutExplainer)
from glassworks.explain.gradient import InputXGradientExplainer
from glassworks.explain.predict import predict_proba
from glassworks.explain.shap import ShapExplainer
from glassworks.explain.types import ExampleInput
from glassworks.models.transformer import TransformerConfig

WORDS = [f"w{i}" for i in range(300)]


def make_examples(tokenizer: TextTokenizer, n: int, n_words: int, seed: int) -> list[ExampleInput]:
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS, size=n_words))
        enc = tokenizer.encode(text, n_words + 1)
        examples.append(ExampleInput(i, text, 0, enc.ids, enc.tokens, None))
    return examples


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--max-evals", type=int, default=500)
    parser.add_argument("--words", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(0)
    tokenizer = TextTokenizer.train(WORDS, TokenizerConfig(kind="wordlevel", vocab_size=1000))
    model = TransformerConfig(max_positions=300).build(tokenizer.vocab_size, 2, tokenizer.pad_id).eval()
    examples = make_examples(tokenizer, args.examples, args.words, seed=1)
    ours = ShapExplainer(max_evals=args.max_evals, pad_id=tokenizer.pad_id)
    ours.explain(model, examples[:1])  # numba warm-up

    # 1. ours vs the floor: the same rows as plain batched forwards.
    n_evals: list[int] = []

    def run_ours() -> None:
        for expl in ours.explain(model, examples):
            n_evals.append(int(expl.extras["n_evals"]))

    t_ours = timed(run_ours)
    rng = np.random.default_rng(0)
    rows = [list(ex.ids) for ex, k in zip(examples, n_evals) for _ in range(k)]
    for row in rows:  # masked rows look like this: some ids replaced by [MASK]
        hide = rng.random(len(row)) < 0.5
        hide[0] = False
        for j in np.flatnonzero(hide):
            row[j] = tokenizer.mask_id
    t_floor = timed(lambda: predict_proba(model, rows, tokenizer.pad_id, batch_size=512))
    print(f"SHAP partition, {args.examples} examples x {args.words} tokens, max_evals={args.max_evals}: "
          f"{sum(n_evals)} masked evaluations")
    print(f"  ours {t_ours:.2f} s   floor (same rows, batched forward) {t_floor:.2f} s   "
          f"ratio {t_ours / t_floor:.2f}x (aim <= 1.5x)")

    # 2. ours vs shap as documented for text: f(list[str]) + shap.maskers.Text, default batch size.
    def f(texts: np.ndarray) -> np.ndarray:
        encoded = tokenizer.encode_batch([str(t) for t in texts], args.words + 1)
        return predict_proba(model, [e.ids for e in encoded], tokenizer.pad_id)

    masker = shap.maskers.Text(r"\W+", mask_token="[MASK]")
    documented = shap.Explainer(f, masker, algorithm="partition")
    documented([examples[0].text], max_evals=args.max_evals)  # warm-up
    t_doc = timed(lambda: documented([ex.text for ex in examples], max_evals=args.max_evals))
    print(f"  shap as documented (strings, Text masker, default batch size) {t_doc:.2f} s   "
          f"ours is {t_doc / t_ours:.1f}x faster (aim >= 5x)")

    # 3. cost as inputs grow.
    methods = {
        "shap": ours, "raw_attention": RawAttentionExplainer(pad_id=0), "rollout": RolloutExplainer(pad_id=0),
        "flow": FlowExplainer(pad_id=0), "grad_attention": GradAttentionExplainer(pad_id=0),
        "input_x_gradient": InputXGradientExplainer(pad_id=0),
    }
    lengths = (16, 64, 256)
    n = max(3, args.examples // 4)
    print(f"\nseconds per example ({n} examples each)")
    print(f"{'method':<18}" + "".join(f"{t:>10} tok" for t in lengths))
    inputs = {t: make_examples(tokenizer, n, t - 1, seed=t) for t in lengths}
    for name, explainer in methods.items():
        cells = []
        for t in lengths:
            seconds = timed(lambda e=explainer, x=inputs[t]: e.explain(model, x)) / n
            cells.append(f"{seconds:>14.4f}")
        print(f"{name:<18}" + "".join(cells))


if __name__ == "__main__":
    main()
