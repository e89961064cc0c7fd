"""LM-task benchmark: python bench/bench_lm.py [--tasks recall copy agreement] [--epochs 3] [--examples 20]

For each synthetic LM task, measured in this one process with the library pieces the lm task
wires together (decoder_tiny sizes, the train.yaml optimiser/schedule/masking defaults):
1. training: wall seconds of ``Trainer.fit`` and ``test/answer_acc`` (greedy exact match);
2. explanations of ``--examples`` test prompts, every generated token, every method: each
   method's ``hit_at_1`` / ``mrr`` / ``auprc`` against the gold evidence, SHAP's hit_at_1 as a
   multiple of the random baseline's;
3. SHAP seconds per generated token vs its forward-pass floor: the same number of masked
   prefixes pushed through ``step_outputs`` as plain batches (ratio).
numba compiles shap's kernels on first use; a warm-up explanation runs before anything is timed.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import time
import warnings

import numpy as np
import pytorch_lightning as pl
import torch

from glassworks.data.lm_datamodule import LMDataModule
from glassworks.data.lm_tasks import AgreementTask, CopyTask, RecallTask
from glassworks.explain.generation import GenerationExplainer, GenerationShap
from glassworks.explain.generation_metrics import summarise
from glassworks.explain.generation_target import prepare_generation, step_outputs
from glassworks.models.causal_lm import CausalLM
from glassworks.models.decoder import DecoderConfig
from glassworks.models.schedules import warmup_cosine

TASKS = {"recall": RecallTask, "copy": CopyTask, "agreement": AgreementTask}


def train(task: str, epochs: int, seed: int) -> tuple[CausalLM, LMDataModule, float, float]:
    pl.seed_everything(seed, verbose=False)
    dm = LMDataModule(TASKS[task](seed=seed), batch_size=64, max_length=32, seed=seed)
    dm.prepare()
    # decoder_tiny.yaml
    config = DecoderConfig(d_model=64, n_heads=4, n_layers=2, d_ff=128, dropout=0.0, max_positions=64)
    module = CausalLM(config.build(dm.vocab_size, dm.vocab.pad_id).spec,
                      functools.partial(torch.optim.AdamW, lr=0.003, weight_decay=0.01),
                      functools.partial(warmup_cosine, warmup_ratio=0.1), mask_token_prob=0.1,
                      mask_id=dm.vocab.mask_id)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, dm)
    seconds = time.perf_counter() - start
    acc = trainer.test(module, dm, verbose=False)[0]["test/answer_acc"]
    return module, dm, seconds, acc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--max-evals", type=int, default=500)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.stdout.reconfigure(line_buffering=True)  # figures appear as each task finishes
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    for task in args.tasks:
        module, dm, fit_seconds, acc = train(task, args.epochs, args.seed)
        model = module.model.eval()
        print(f"\n== {task}: fit {fit_seconds:.1f} s ({args.epochs} epochs, {args.threads} threads), "
              f"test/answer_acc {acc:.3f}")
        examples = [prepare_generation(model, dm.vocab, e, i)
                    for i, e in enumerate(dm.examples("test")[: args.examples])]
        steps = [s for e in examples for s in e.steps]
        explainer = GenerationExplainer(seed=args.seed, shap_config=GenerationShap(
            max_evals=args.max_evals, mask_id=dm.vocab.mask_id, seed=args.seed))
        explainer.explain_step(model, steps[0])  # warm-up: numba compiles shap's kernels
        attributions = explainer.explain(model, steps)
        summary = summarise(model, steps, attributions, dm.vocab.mask_id)
        print(f"{'method':>18} {'hit_at_1':>9} {'mrr':>7} {'auprc':>7} {'compr':>7} {'suff':>7} {'ms/step':>8}")
        for method, row in summary.items():
            print(f"{method:>18} {row.get('hit_at_1', float('nan')):9.3f} {row.get('mrr', float('nan')):7.3f} "
                  f"{row.get('auprc', float('nan')):7.3f} {row['comprehensiveness']:7.3f} "
                  f"{row['sufficiency']:7.3f} {1000 * row['seconds_per_step']:8.1f}")
        rand = summary["random_order"].get("hit_at_1", 0.0)
        if rand > 0:
            print(f"SHAP hit_at_1 / random hit_at_1 = {summary['shap']['hit_at_1'] / rand:.2f}x "
                  f"over {int(summary['shap']['n_gold_steps'])} gold steps")

        shap_runs = [a for a in attributions if a.method == "shap"]
        shap_seconds = sum(a.seconds for a in shap_runs)
        n_evals = [a.extras["n_evals"] for a in shap_runs]
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for step, n in zip(steps, n_evals):
            rows = np.tile(np.asarray(step.prefix_ids), (n, 1))
            rows[:, 1:][rng.random((n, step.n_positions - 1)) < 0.5] = dm.vocab.mask_id
            step_outputs(model, rows, step)
        floor = time.perf_counter() - start
        print(f"SHAP per generated token: {1000 * shap_seconds / len(steps):.1f} ms, forward floor "
              f"{1000 * floor / len(steps):.1f} ms ({np.mean(n_evals):.0f} evals/token): "
              f"ratio {shap_seconds / floor:.2f}x")


if __name__ == "__main__":
    main()
