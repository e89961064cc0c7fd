"""LM-task benchmark: python bench/bench_lm.py [--tasks recall copy agreement] [--epochs 4] [--n-train 4000] [--examples 20]

For each synthetic LM task, measured in this one process with the library pieces the lm task
wires together (decoder_tiny sizes, the train.yaml optimiser/schedule/masking defaults):
1. training: wall seconds of ``Trainer.fit`` and ``test/answer_acc`` (greedy exact match);
2. explanations of ``--examples`` test prompts, every generated token, every method: each
   method's ``hit_at_1`` / ``mrr`` / ``auprc`` against the gold evidence, SHAP's hit_at_1 as a
   multiple of the random baseline's;
3. SHAP seconds per generated token vs its forward-pass floor: the same number of masked
   prefixes pushed through ``step_outputs`` as plain batches (ratio).
An untimed first explanation runs before anything is timed (torch's first forwards).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import emit  # noqa: E402
from bench.generation_floor import shap_vs_floor, train_lm  # noqa: E402
from glassworks.data.lm_tasks import AgreementTask, CopyTask, RecallTask  # noqa: E402
from glassworks.explain.generation import GenerationExplainer, GenerationShap  # noqa: E402
from glassworks.explain.generation_metrics import summarise  # noqa: E402
from glassworks.explain.generation_target import prepare_generation  # noqa: E402

TASKS = {"recall": RecallTask, "copy": CopyTask, "agreement": AgreementTask}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--n-train", type=int, default=4000, help="training prompts (data=lm_* default)")
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

    ratios, absolute = {}, {}
    for task in args.tasks:
        module, dm, fit_seconds, acc = train_lm(TASKS[task](seed=args.seed, n_train=args.n_train), args.epochs, args.seed)
        model = module.model.eval()
        print(f"\n== {task}: fit {fit_seconds:.1f} s ({args.epochs} epochs, {args.threads} threads), "
              f"test/answer_acc {acc:.3f}")
        examples = [prepare_generation(model, dm.vocab, e, i)
                    for i, e in enumerate(dm.examples("test")[: args.examples])]
        steps = [s for e in examples for s in e.steps]
        explainer = GenerationExplainer(seed=args.seed, shap_config=GenerationShap(
            max_evals=args.max_evals, mask_id=dm.vocab.mask_id, seed=args.seed))
        explainer.explain_step(model, steps[0])  # an untimed first call (torch's first forwards)
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

        floor = shap_vs_floor(model, steps, attributions, dm.vocab.mask_id)
        print(f"SHAP per generated token: {floor['shap_ms_per_token']:.1f} ms, forward floor "
              f"{floor['floor_ms_per_token']:.1f} ms ({floor['evals_per_token']:.0f} evals/token): "
              f"ratio {floor['ratio']:.2f}x")
        ratios[f"{task}_shap_over_floor"] = floor["ratio"]
        if rand > 0:
            ratios[f"{task}_shap_hit_at_1_over_random"] = summary["shap"]["hit_at_1"] / rand
        absolute.update({f"{task}_fit_s": fit_seconds, f"{task}_test_answer_acc": acc,
                         f"{task}_shap_ms_per_token": floor["shap_ms_per_token"],
                         f"{task}_floor_ms_per_token": floor["floor_ms_per_token"],
                         **{f"{task}_{method}_{key}": value for method, row in summary.items()
                            for key, value in row.items()}})
    emit("lm", ratios, {**absolute, "threads": args.threads, "epochs": args.epochs, "examples": args.examples})


if __name__ == "__main__":
    main()
