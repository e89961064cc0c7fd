"""Explain-stage benchmark: python bench/bench_explain.py [--repeats 5] [--epochs 4]

Measured side by side in this one process (repeats interleaved, medians):
1. the SHAP stage of a default run against captum's ShapleyValueSampling: the default model is
   trained first, then our SHAP explains the 40 test examples the explain stage picks, first
   call in this process included (Partition compiles no numba kernel: there is no warm-up), and
   captum (25 permutations) explains the same examples;
   seconds per example and ERASER comprehensiveness ([MASK] replacement) of both (aim: ours
   <= 0.5x captum's time at equal or better comprehensiveness), with a 95% bootstrap interval of
   the comprehensiveness difference over the examples ("equal" when it holds 0). captum is a
   benchmark-only dependency: ``pip install captum``.
2. our SHAP Partition against its floor, the same number of masked rows pushed through the
   model as plain forwards of 512 rows, at 16 and 64 tokens on the trained model (aim <= 1.3x);
3. our SHAP against shap used as its docs show for text: a function of strings with
   ``shap.maskers.Text`` and the default batch size, same max_evals (aim >= 5x faster);
4. seconds per example of every method at 16 / 64 / 256 tokens (untrained model, one pass);
5. generation (task=lm): SHAP seconds per generated token against its forward-pass floor, on
   decoder_tiny trained on lm_recall (``--generation-examples`` test prompts, every generated
   token; the floor pushes as many masked prefixes through the model as plain batches).
   ``--generation-only`` runs just this part.
The last line is one JSON object: {"bench": "explain", "ratios": {...}, "absolute": {...}}.
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

WORDS = [f"w{i}" for i in range(300)]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def difference_interval(ours: list[float], theirs: list[float], resamples: int = 10_000,
                        seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of mean(ours - theirs), the examples resampled with replacement
    (paired: both methods explained the same examples). Its mean is the comprehensiveness
    difference itself (comprehensiveness averages per-example values)."""
    diff = np.asarray(ours, dtype=np.float64) - np.asarray(theirs, dtype=np.float64)  # (N,)
    picks = np.random.default_rng(seed).integers(0, len(diff), size=(resamples, len(diff)))  # (R, N)
    means = diff[picks].mean(axis=1)  # (R,)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def train_default_model(tmp: Path, epochs: int):
    """The default config's model, trained and logged like pipeline.run's train stage."""
    from pipeline.stage import build_job, open_run
    from pipeline.train import train
    from pipeline.compose import config_at

    cfg = config_at(tmp, ["trainer=cpu", f"trainer.max_epochs={epochs}", "logger.system_metrics=false"],
                    config_name="run")
    job = build_job(cfg)
    open_run(job)
    with job.tracker.lifecycle("train"):
        result = train(job)
    return cfg, job, result


def stage_vs_captum(args, tmp: Path) -> dict:
    from glassworks.tasks.classify import ClassifyTask
    from glassworks.explain.metrics import faithfulness
    from glassworks.tracking.pyfunc import load_run_model

    t_train = time.perf_counter()
    cfg, job, result = train_default_model(tmp / "run", args.epochs)
    t_train = time.perf_counter() - t_train
    loaded = load_run_model(job.tracker.run_id, job.tracker.uri)
    model = loaded.model.eval()
    mask_id, pad_id = loaded.tokenizer.mask_id, loaded.tokenizer.pad_id
    examples = ClassifyTask().explain_examples(loaded, job.datamodule, cfg.explain.n_examples, cfg.explain.seed)

    from glassworks.explain.shap import ShapExplainer

    shap_cfg = {k: v for k, v in cfg.explain.shap.items() if k != "_target_"}
    ours = ShapExplainer(**shap_cfg, pad_id=pad_id, mask_id=mask_id)

    def run_ours():
        out = []
        for start in range(0, len(examples), 16):  # the runner's chunks
            out += ours.explain(model, examples[start : start + 16])
        return out

    from captum.attr import ShapleyValueSampling

    from glassworks.explain.predict import predicted_target
    from glassworks.explain.types import Explanation

    def forward(ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, C) probabilities
        return torch.softmax(model(input_ids=ids, attention_mask=(ids != pad_id).long()).logits, dim=-1)

    svs = ShapleyValueSampling(forward)

    def run_captum():
        out = []
        with torch.no_grad():
            for ex in examples:
                start = time.perf_counter()
                target, prob = predicted_target(model, ex.ids, pad_id)
                ids = torch.tensor([ex.ids], dtype=torch.long)  # (1, T)
                base = ids.clone()
                base[:, 1:] = mask_id  # [CLS] kept: its attribution is 0
                attr = svs.attribute(ids, baselines=base, target=target, n_samples=args.captum_samples,
                                     perturbations_per_eval=args.captum_batch)  # (1, T)
                out.append(Explanation("captum_svs", ex.example_id, target, attr[0].double().numpy(), None,
                                       prob, None, time.perf_counter() - start))
        return out

    # First calls in this process: ours right after training.
    t0 = time.perf_counter()
    ours_expl = run_ours()
    first_ours = (time.perf_counter() - t0) / len(examples)
    t0 = time.perf_counter()
    captum_expl = run_captum()
    first_captum = (time.perf_counter() - t0) / len(examples)
    ours_t, captum_t = [first_ours], [first_captum]
    for _ in range(args.repeats - 1):
        ours_t.append(timed(run_ours) / len(examples))
        captum_t.append(timed(run_captum) / len(examples))
    comp_ours = faithfulness(model, examples, ours_expl, mask_id, pad_id)["comprehensiveness"]
    comp_captum = faithfulness(model, examples, captum_expl, mask_id, pad_id)["comprehensiveness"]
    low, high = difference_interval(
        [faithfulness(model, [ex], [e], mask_id, pad_id)["comprehensiveness"] for ex, e in zip(examples, ours_expl)],
        [faithfulness(model, [ex], [e], mask_id, pad_id)["comprehensiveness"] for ex, e in zip(examples, captum_expl)])
    med = statistics.median
    print(f"default model: {result.train_steps} steps trained in {t_train:.1f} s, test/acc "
          f"{result.metrics.get('test/acc', float('nan')):.4f}")
    print(f"SHAP stage vs captum ShapleyValueSampling ({args.captum_samples} permutations, "
          f"perturbations_per_eval={args.captum_batch}), {len(examples)} test examples, median of {args.repeats}")
    print(f"  ours   first call {first_ours:.4f} s/example   median {med(ours_t):.4f} s/example   "
          f"comprehensiveness {comp_ours:.3f}")
    print(f"  captum first call {first_captum:.4f} s/example   median {med(captum_t):.4f} s/example   "
          f"comprehensiveness {comp_captum:.3f}")
    verdict = "better" if low > 0 else "worse" if high < 0 else "equal within the examples' spread"
    print(f"  comprehensiveness ours - captum {comp_ours - comp_captum:+.4f}, 95% bootstrap interval over the "
          f"{len(examples)} examples [{low:+.4f}, {high:+.4f}]: {verdict}")
    print(f"  ratio ours/captum time: first call {first_ours / first_captum:.2f}, median "
          f"{med(ours_t) / med(captum_t):.2f} (aim <= 0.5 at equal or better comprehensiveness)")
    return {
        "model": model, "tokenizer": loaded.tokenizer, "ours": ours,
        "ratios": {"stage_vs_captum_svs_first_call": first_ours / first_captum,
                   "stage_vs_captum_svs": med(ours_t) / med(captum_t),
                   "comprehensiveness_ours_minus_captum": comp_ours - comp_captum},
        "absolute": {"shap_stage_first_call_s_per_example": first_ours,
                     "shap_stage_s_per_example": med(ours_t),
                     "captum_svs_s_per_example": med(captum_t),
                     "comprehensiveness_shap": comp_ours, "comprehensiveness_captum_svs": comp_captum,
                     "comprehensiveness_difference_ci95": [low, high],
                     "train_s": t_train},
    }


def random_examples(tokenizer, n: int, n_tokens: int, seed: int):
    """n examples of [CLS] + n_tokens - 1 ordinary vocabulary ids."""
    from glassworks.explain.types import ExampleInput

    rng = np.random.default_rng(seed)
    first = max(tokenizer.mask_id, tokenizer.pad_id, tokenizer.cls_id, tokenizer.unk_id) + 1
    examples = []
    for i in range(n):
        ids = [int(tokenizer.cls_id)] + [int(x) for x in rng.integers(first, tokenizer.vocab_size, n_tokens - 1)]
        examples.append(ExampleInput(i, "", 0, ids, [str(x) for x in ids], None))
    return examples


def floor_ratios(args, model, tokenizer, ours) -> dict:
    from glassworks.explain.predict import predict_proba

    pad_id, mask_id = tokenizer.pad_id, tokenizer.mask_id
    rng = np.random.default_rng(0)
    results = {}
    inputs = {t: random_examples(tokenizer, args.examples, t, seed=t) for t in (16, 64)}
    rows = {}
    for t, exs in inputs.items():
        n_evals = [int(e.extras["n_evals"]) for e in ours.explain(model, exs)]
        masked = np.repeat(np.array([e.ids for e in exs]), n_evals, axis=0)  # (sum(n_evals), T)
        hide = rng.random(masked.shape) < 0.5
        hide[:, 0] = False
        rows[t] = np.where(hide, mask_id, masked)
        results[t] = {"ours": [], "floor": [], "evals": sum(n_evals)}
    for repeat in range(args.repeats):
        for t, exs in inputs.items():
            sides = [("ours", lambda: ours.explain(model, exs)),
                     ("floor", lambda: predict_proba(model, rows[t], pad_id, batch_size=512))]
            # Which side runs first alternates: the first forwards after the other length's run pay
            # for its memory (allocator, caches), and that must not always land on one side.
            for side, run in sides if repeat % 2 == 0 else sides[::-1]:
                results[t][side].append(timed(run))
    ratios, absolute = {}, {}
    med = statistics.median
    print(f"\nSHAP partition vs its floor (same rows as forwards of 512), {args.examples} examples, "
          f"max_evals={ours.max_evals}, concurrent_examples={ours.concurrent_examples}, median of {args.repeats}, "
          "the first side alternating")
    for t, r in results.items():
        ratio = med(r["ours"]) / med(r["floor"])
        paired = med([a / b for a, b in zip(r["ours"], r["floor"], strict=True)])
        print(f"  {t:>3} tokens: {r['evals']} rows   ours {med(r['ours']):.3f} s   floor {med(r['floor']):.3f} s   "
              f"ratio {ratio:.2f}x (aim <= 1.3x), median of the paired ratios {paired:.2f}x")
        ratios[f"partition_vs_floor_{t}tok"] = ratio
        ratios[f"partition_vs_floor_{t}tok_paired"] = paired
        absolute[f"partition_s_per_example_{t}tok"] = med(r["ours"]) / args.examples
        absolute[f"floor_s_per_example_{t}tok"] = med(r["floor"]) / args.examples
    return {"ratios": ratios, "absolute": absolute}


def documented_ratio(args, model, tokenizer, ours) -> dict:
    import shap

    from glassworks.explain.predict import predict_proba
    from glassworks.explain.types import ExampleInput

    n_words = args.words
    rng = np.random.default_rng(1)
    first = max(tokenizer.mask_id, tokenizer.pad_id, tokenizer.cls_id, tokenizer.unk_id) + 1
    vocab = [w for w in (tokenizer.id_to_token(i) for i in range(first, tokenizer.vocab_size)) if w.isalnum()]
    examples = []
    for i in range(args.examples):
        text = " ".join(rng.choice(vocab, size=n_words))
        enc = tokenizer.encode(text, n_words + 1)
        examples.append(ExampleInput(i, text, 0, enc.ids, enc.tokens, None))

    def f(texts: np.ndarray) -> np.ndarray:
        encoded = tokenizer.encode_batch([str(t) for t in texts], n_words + 1)
        return predict_proba(model, [e.ids for e in encoded], tokenizer.pad_id)

    documented = shap.Explainer(f, shap.maskers.Text(r"\W+", mask_token="[MASK]"), algorithm="partition")
    documented([examples[0].text], max_evals=ours.max_evals)  # its own first call
    t_ours, t_doc = [], []
    for _ in range(args.repeats):
        t_ours.append(timed(lambda: ours.explain(model, examples)))
        t_doc.append(timed(lambda: documented([ex.text for ex in examples], max_evals=ours.max_evals)))
    med = statistics.median
    speedup = med(t_doc) / med(t_ours)
    print(f"\nours vs shap as documented (strings, Text masker, default batch size), {args.examples} x "
          f"{n_words} words, median of {args.repeats}")
    print(f"  ours {med(t_ours):.2f} s   documented {med(t_doc):.2f} s   ours is {speedup:.1f}x faster (aim >= 5x)")
    return {"ratios": {"documented_shap_over_ours": speedup},
            "absolute": {"documented_shap_s_per_example": med(t_doc) / args.examples}}


def methods_table(args) -> dict:
    from glassworks.data.tokenizer import TextTokenizer, TokenizerConfig
    from glassworks.explain.attention import (FlowExplainer, GradAttentionExplainer, RawAttentionExplainer,
                                              RolloutExplainer)
    from glassworks.explain.gradient import InputXGradientExplainer
    from glassworks.explain.shap import ShapExplainer
    from glassworks.models.transformer import TransformerConfig

    torch.manual_seed(0)
    tokenizer = TextTokenizer.train(WORDS, TokenizerConfig(kind="wordlevel", vocab_size=1000))
    model = TransformerConfig(max_positions=300).build(tokenizer.vocab_size, 2, tokenizer.pad_id).eval()
    methods = {
        "shap": ShapExplainer(pad_id=tokenizer.pad_id, mask_id=tokenizer.mask_id),
        "raw_attention": RawAttentionExplainer(pad_id=0), "rollout": RolloutExplainer(pad_id=0),
        "flow": FlowExplainer(pad_id=0), "grad_attention": GradAttentionExplainer(pad_id=0),
        "input_x_gradient": InputXGradientExplainer(pad_id=0),
    }
    lengths = (16, 64, 256)
    n = max(3, args.examples // 4)
    print(f"\nseconds per example ({n} examples each, untrained model, one pass)")
    print(f"{'method':<18}" + "".join(f"{t:>10} tok" for t in lengths))
    inputs = {t: random_examples(tokenizer, n, t, seed=t) for t in lengths}
    absolute = {}
    for name, explainer in methods.items():
        cells = []
        for t in lengths:
            seconds = timed(lambda e=explainer, x=inputs[t]: e.explain(model, x)) / n
            absolute[f"{name}_s_per_example_{t}tok"] = seconds
            cells.append(f"{seconds:>14.4f}")
        print(f"{name:<18}" + "".join(cells))
    return {"ratios": {}, "absolute": absolute}


def generation_ratio(args) -> dict:
    """Part 5: SHAP per generated token / its forward floor, on a trained decoder_tiny (one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as experiment=lm_* runs (torch_threads: 1)
    try:
        return _generation_ratio(args)
    finally:
        torch.set_num_threads(threads)


def _generation_ratio(args) -> dict:
    from bench.generation_floor import shap_vs_floor, train_lm
    from glassworks.data.lm_tasks import RecallTask
    from glassworks.explain.generation import GenerationExplainer, GenerationShap
    from glassworks.explain.generation_target import prepare_generation

    module, dm, fit_seconds, acc = train_lm(RecallTask(seed=0, n_train=4000), args.generation_epochs, 0)
    model = module.model.eval()
    examples = [prepare_generation(model, dm.vocab, e, i)
                for i, e in enumerate(dm.examples("test")[: args.generation_examples])]
    steps = [s for e in examples for s in e.steps]
    explainer = GenerationExplainer(["shap"], GenerationShap(max_evals=500, mask_id=dm.vocab.mask_id))
    explainer.explain_step(model, steps[0])  # an untimed first call (torch's first forwards)
    floor = shap_vs_floor(model, steps, explainer.explain(model, steps), dm.vocab.mask_id)
    print(f"\n== generation: decoder_tiny on lm_recall (fit {fit_seconds:.1f} s, test/answer_acc {acc:.3f}), "
          f"{len(steps)} generated tokens\nSHAP per generated token {floor['shap_ms_per_token']:.1f} ms, forward "
          f"floor {floor['floor_ms_per_token']:.1f} ms ({floor['evals_per_token']:.0f} evals/token): "
          f"ratio {floor['ratio']:.2f}x")
    return {"ratios": {"generation_shap_over_floor": floor["ratio"]},
            "absolute": {"generation_shap_ms_per_token": floor["shap_ms_per_token"],
                         "generation_floor_ms_per_token": floor["floor_ms_per_token"],
                         "generation_evals_per_token": floor["evals_per_token"],
                         "generation_test_answer_acc": acc}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=20, help="examples per floor/documented measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of the default model")
    parser.add_argument("--words", type=int, default=24)
    parser.add_argument("--captum-samples", type=int, default=25)
    parser.add_argument("--captum-batch", type=int, default=64, help="captum perturbations_per_eval")
    parser.add_argument("--skip-methods", action="store_true", help="leave out the per-method table")
    parser.add_argument("--generation-only", action="store_true", help="only part 5 (task=lm generation)")
    parser.add_argument("--generation-examples", type=int, default=20, help="test prompts explained in part 5")
    parser.add_argument("--generation-epochs", type=int, default=6, help="training epochs of part 5's decoder (experiment=lm_recall: 6)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    load = os.getloadavg()[0]
    parts = []
    if not args.generation_only:
        with tempfile.TemporaryDirectory() as d:
            stage = stage_vs_captum(args, Path(d))
            parts = [stage, floor_ratios(args, stage["model"], stage["tokenizer"], stage["ours"]),
                     documented_ratio(args, stage["model"], stage["tokenizer"], stage["ours"])]
            if not args.skip_methods:
                parts.append(methods_table(args))
    parts.append(generation_ratio(args))
    ratios = {k: v for p in parts for k, v in p["ratios"].items()}
    absolute = {k: v for p in parts for k, v in p["absolute"].items()}
    emit("explain", ratios, {**absolute, "load_average_start": load, "repeats": args.repeats})


if __name__ == "__main__":
    main()
