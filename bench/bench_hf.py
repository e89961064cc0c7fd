"""Pretrained-encoder benchmark (the packaged all-MiniLM-L6-v2): python bench/bench_hf.py [--steps 30]

Prints, measured side by side in this one process on the same model and batches:
1. our train stage (Lightning + TextClassifier, model=minilm) vs a hand-written PyTorch loop over
   the same HF model, the same DataLoader and the same AdamW parameter groups: training steps per
   second (ratio; aim >= 0.95);
2. SHAP (partition) on MiniLM at 16 and 64 tokens vs its floor: the same number of masked rows
   pushed through the model as plain batched forwards (ratio).
Repeats are interleaved so drift on a shared machine hits both sides alike; the median counts.
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
import torch.nn.functional as F  # noqa: E402

from bench.results import emit  # noqa: E402
from glassworks.explain.predict import predict_proba  # noqa: E402
from glassworks.explain.shap import ShapExplainer  # noqa: E402
from glassworks.explain.types import ExampleInput  # noqa: E402
from pipeline.stage import build_job  # noqa: E402
from pipeline.train import train  # noqa: E402
from pipeline.compose import config_at  # noqa: E402

OVERRIDES = ["model=minilm", "logger=none", "trainer=cpu", "callbacks=none", "test=false",
             "data.source.n_train=2000", "data.source.n_validation=32", "data.source.n_test=32",
             "data.batch_size=32", "data.max_length=32", "mask_token_prob=0.0",
             "+trainer.limit_val_batches=0", "trainer.max_epochs=1"]


def ours(tmp: Path, steps: int) -> float:
    cfg = config_at(tmp, [*OVERRIDES, f"+trainer.max_steps={steps}"])
    result = train(build_job(cfg))
    return result.train_steps / result.fit_seconds


def hand_loop(tmp: Path, steps: int) -> float:
    cfg = config_at(tmp, OVERRIDES)
    job = build_job(cfg)
    dm = job.datamodule
    net = job.model_config.build(dm.vocab_size, dm.n_classes, dm.tokenizer.pad_id).train()
    opt = torch.optim.AdamW(net.parameter_groups(), lr=5e-5, weight_decay=0.01)
    batches = iter(dm.train_dataloader())
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        loss = F.cross_entropy(net(batch["input_ids"], batch["attention_mask"]).logits, batch["labels"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    return steps / (time.perf_counter() - start)


def shap_vs_floor(model, tokenizer, n_tokens: int, n: int, max_evals: int) -> tuple[float, float]:
    rng = np.random.default_rng(n_tokens)
    words = [w for w in tokenizer.hf.get_vocab() if w.isalpha() and len(w) > 3][:2000]
    examples = []
    for i in range(n):
        text = " ".join(rng.choice(words, size=n_tokens))
        enc = tokenizer.encode(text, n_tokens)
        examples.append(ExampleInput(i, text, 0, enc.ids, enc.tokens, None, word_ids=enc.word_ids))
    explainer = ShapExplainer(max_evals=max_evals, batch_size=256)
    start = time.perf_counter()
    n_evals = sum(int(e.extras["n_evals"]) for e in explainer.explain(model, examples))
    t_ours = time.perf_counter() - start
    rows = []
    for ex in examples:
        for _ in range(n_evals // n):
            row = list(ex.ids)
            for j in np.flatnonzero(rng.random(len(row) - 2) < 0.5) + 1:
                row[j] = tokenizer.mask_id
            rows.append(row)
    start = time.perf_counter()
    predict_proba(model, rows, tokenizer.pad_id, batch_size=256)
    return t_ours, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--max-evals", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as tmp:
        ratios = []
        for r in range(args.repeats):
            a = ours(Path(tmp) / f"ours{r}", args.steps)
            b = hand_loop(Path(tmp) / f"loop{r}", args.steps)
            ratios.append(a / b)
            print(f"  repeat {r}: ours {a:.2f} steps/s   hand loop {b:.2f} steps/s   ratio {a / b:.2f}")
        print(f"MiniLM train, {args.steps} steps of 32 x <=32 tokens: ours / hand loop = "
              f"{statistics.median(ratios):.2f} (median of {args.repeats}; aim >= 0.95)")

        job = build_job(config_at(Path(tmp) / "shap", OVERRIDES))
        dm = job.datamodule
        model = job.model_config.build(dm.vocab_size, dm.n_classes, dm.tokenizer.pad_id).eval()
        shap_vs_floor(model, dm.tokenizer, 16, 1, 64)  # untimed first call (torch's first forwards)
        shap = {}
        for n_tokens in (16, 64):
            t_ours, t_floor = shap_vs_floor(model, dm.tokenizer, n_tokens, args.examples, args.max_evals)
            shap[n_tokens] = (t_ours, t_floor)
            print(f"SHAP on MiniLM, {n_tokens} tokens, {args.examples} examples, max_evals={args.max_evals}: "
                  f"ours {t_ours:.2f} s   floor {t_floor:.2f} s   ratio {t_ours / t_floor:.2f}x")
    emit("hf", {"train_ours_over_hand_loop": statistics.median(ratios),
                **{f"partition_vs_floor_{t}tok": o / f for t, (o, f) in shap.items()}},
         {"train_ratio_repeats": ratios, "steps": args.steps, "repeats": args.repeats, "examples": args.examples,
          "max_evals": args.max_evals,
          **{f"partition_s_per_example_{t}tok": o / args.examples for t, (o, _) in shap.items()},
          **{f"floor_s_per_example_{t}tok": f / args.examples for t, (_, f) in shap.items()}})


if __name__ == "__main__":
    main()
