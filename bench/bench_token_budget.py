"""The CPU token cap on SHAP's forwards: python bench/bench_token_budget.py [--model default|minilm]

Explains the same random examples with `explain.shap.max_batch_tokens=null` (batch_size rows alone,
512) and `auto` (at most 2^19 / the model's width padded tokens a forward), interleaved, and prints
per length: ms per example of each, the speed-up (uncapped / capped) and the largest difference in
the SHAP values (the cap changes the batches, never the values beyond the last bits).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.results import emit  # noqa: E402
from glassworks.explain.predict import token_budget  # noqa: E402
from glassworks.explain.shap import ShapExplainer  # noqa: E402
from glassworks.explain.types import ExampleInput  # noqa: E402
from pipeline.stage import build_job  # noqa: E402
from pipeline.compose import config_at  # noqa: E402

DEFAULTS = {"default": ([16, 64, 128], 40, 500), "minilm": ([64, 128], 4, 300)}


def build_model(which: str, tmp: Path):
    overrides = ["logger=none", "trainer=cpu", "callbacks=none", "test=false"]
    job = build_job(config_at(tmp, overrides + (["model=minilm"] if which == "minilm" else [])))
    dm = job.datamodule
    return job.model_config.build(dm.vocab_size, dm.n_classes, dm.tokenizer.pad_id).eval(), dm.vocab_size


def examples(n: int, n_tokens: int, vocab_size: int) -> list[ExampleInput]:
    rng = np.random.default_rng(n_tokens)
    out = []
    for i in range(n):
        ids = [2] + [int(x) for x in rng.integers(5, min(2000, vocab_size), n_tokens - 1)]  # (T,)
        out.append(ExampleInput(i, "", 0, ids, [str(x) for x in ids], None))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=sorted(DEFAULTS), default="default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="torch intra-op threads (the budget depends on them)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths, n, max_evals = DEFAULTS[args.model]
    with tempfile.TemporaryDirectory() as tmp:
        model, vocab_size = build_model(args.model, Path(tmp))
    ShapExplainer(max_evals=50).explain(model, examples(2, 8, vocab_size))  # untimed: torch's first forwards
    ratios, absolute = {}, {"budget_tokens": token_budget(model), "examples": n, "max_evals": max_evals,
                            "threads": torch.get_num_threads()}
    for n_tokens in lengths:
        exs = examples(n, n_tokens, vocab_size)
        seconds = {"uncapped": [], "auto": []}
        values = {}
        for _ in range(args.repeats):
            for key in seconds:
                explainer = ShapExplainer(max_evals=max_evals, max_batch_tokens=None if key == "uncapped" else "auto")
                start = time.perf_counter()
                explained = explainer.explain(model, exs)
                seconds[key].append(time.perf_counter() - start)
                values[key] = np.concatenate([e.scores for e in explained])
        uncapped, auto = (statistics.median(seconds[k]) for k in ("uncapped", "auto"))
        diff = float(np.abs(values["uncapped"] - values["auto"]).max())
        print(f"{args.model}, {n_tokens} tokens, {n} examples: uncapped {uncapped / n * 1e3:.1f} ms/example   "
              f"auto (<= {token_budget(model)} tokens) {auto / n * 1e3:.1f} ms/example   "
              f"speed-up {uncapped / auto:.2f}x   max |difference| {diff:.1e}")
        ratios[f"uncapped_over_auto_{n_tokens}tok"] = uncapped / auto
        absolute[f"auto_ms_per_example_{n_tokens}tok"] = auto / n * 1e3
        absolute[f"max_abs_difference_{n_tokens}tok"] = diff
    emit(f"token_budget_{args.model}", ratios, absolute)


if __name__ == "__main__":
    main()
