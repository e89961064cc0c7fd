"""Train-stage benchmark: python bench/bench_train.py [--epochs 3] [--repeats 5] [--run-wall-vs REV]

Prints, measured side by side in this one process:
1. the default ``python -m pipeline.train`` end to end (imports included, a subprocess) and its
   test accuracy;
2. Lightning + our module vs a hand-written PyTorch loop on the same model, data and batch
   size: training steps per second (ratio); and between them bare Lightning (the same recipe in a
   minimal LightningModule: no logger, callbacks, progress bar, summary or checkpoints), which
   splits the gap into Lightning's own loop (bare/plain) and what glassworks adds (ours/bare);
3. tracking overhead: logger=mlflow vs logger=none, same config (ratio);
4. resume checkpoints (every 50 steps and each validation, atomic writes) vs none (ratio).
5. with ``--run-wall-vs REV``: the default ``python -m pipeline.run`` (train, explain, robustness,
   report; imports included) wall time of this tree against git revision REV (checked out in a
   temporary folder by git archive), interleaved, with the run's test/acc and SHAP comprehensiveness.
Every ratio is paired: each round runs every variant once, in a rotating order, and a ratio is taken
within a round (drift on a shared machine hits both sides alike); the median over rounds counts,
printed with the lowest and highest.
The last line is one JSON object: {"bench": "train", "ratios": {...}, "absolute": {...}}.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench.results import emit  # noqa: E402
from pipeline.stage import build_job, open_run  # noqa: E402
from pipeline.train import train  # noqa: E402
from pipeline.compose import config_at  # noqa: E402

# The default config but for the test split and early stopping (a fixed number of steps); the
# progress bar is the default one (until 2026-12-01 this nulled it, and Lightning then added its
# own RichProgressBar, drawn after every batch).
COMMON = ["trainer=cpu", "test=false", "callbacks.early_stopping=null"]


def logger_overrides(logger: str) -> list[str]:
    return [f"logger={logger}"] + (["logger.system_metrics=false"] if logger == "mlflow" else [])


def end_to_end(tmp: Path) -> tuple[float, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GLASSWORKS_ROOT": str(tmp), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pipeline.train"], cwd=tmp, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return wall, f"{runs[0].data.metrics['test/acc']:.4f}"


def pipeline_run(tmp: Path, code: Path) -> dict[str, float]:
    """Wall time and key metrics of the default ``python -m pipeline.run`` of the tree at `code`."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GLASSWORKS_ROOT": str(tmp), "PYTHONPATH": f"{code / 'src'}{os.pathsep}{code}",
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    where = subprocess.run([sys.executable, "-c", "import glassworks, pipeline; print(glassworks.__file__)"],
                           cwd=tmp, env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not where.startswith(str(code)):
        raise SystemExit(f"pipeline_run: glassworks imported from {where}, not from {code}")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pipeline.run"], cwd=tmp, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()])[0]
    m = run.data.metrics
    return {"wall_s": wall, "test_acc": m.get("test/acc", float("nan")),
            "shap_comprehensiveness": m.get("explain/shap/comprehensiveness", float("nan")),
            **{k.replace("/", "_"): v for k, v in m.items() if k.startswith("time/")}}


def lightning_steps_per_sec(tmp: Path, epochs: int, logger: str, extra: tuple[str, ...] = ()) -> tuple[float, int]:
    cfg = config_at(tmp, [*COMMON, f"trainer.max_epochs={epochs}", *logger_overrides(logger), *extra])
    job = build_job(cfg)
    open_run(job)
    with job.tracker.lifecycle("train"):
        result = train(job)
    return result.train_steps / result.fit_seconds, result.train_steps


def _masked(batch: dict[str, torch.Tensor], mask_prob: float, mask_id: int) -> torch.Tensor:
    """The batch's input ids with `mask_prob` of the tokens (never [CLS], never padding) -> [MASK]."""
    ids, attention = batch["input_ids"], batch["attention_mask"]  # (B, T)
    if mask_prob <= 0:
        return ids
    maskable = attention.bool()
    maskable[:, 0] = False  # [CLS] stays
    return ids.masked_fill((torch.rand(ids.shape) < mask_prob) & maskable, mask_id)


def _recipe(tmp: Path, epochs: int):
    """What the plain loop and bare Lightning both start from: the default job's model, optimizer
    and schedule factories, loaders and [MASK] settings, and its trainer's determinism."""
    cfg = config_at(tmp, [*COMMON, f"trainer.max_epochs={epochs}", "logger=none"])
    job = build_job(cfg)
    dm = job.datamodule
    model = job.model_config.build(dm.vocab_size, dm.n_classes, dm.tokenizer.pad_id)
    return (job, model, dm.train_dataloader(), dm.val_dataloader(), float(cfg.mask_token_prob),
            dm.tokenizer.mask_id, bool(cfg.trainer.get("deterministic", False)))


class _BareModule(pl.LightningModule):
    """The plain loop's step as a LightningModule: no metrics, no logging."""

    def __init__(self, model, optimizer, scheduler, total_steps: int, mask_prob: float, mask_id: int):
        super().__init__()
        self.model, self.make_optimizer, self.make_scheduler = model, optimizer, scheduler
        self.total_steps, self.mask_prob, self.mask_id = total_steps, mask_prob, mask_id

    def training_step(self, batch, batch_idx):
        ids = _masked(batch, self.mask_prob, self.mask_id)
        return F.cross_entropy(self.model(ids, batch["attention_mask"]).logits, batch["labels"])

    def validation_step(self, batch, batch_idx):
        (self.model(batch["input_ids"], batch["attention_mask"]).logits.argmax(-1) == batch["labels"]).sum()

    def configure_optimizers(self):
        opt = self.make_optimizer(self.parameters())
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.make_scheduler(opt, total_steps=self.total_steps),
                                                   "interval": "step"}}


def bare_lightning_steps_per_sec(tmp: Path, epochs: int) -> float:
    """The plain loop's recipe run by Lightning with nothing of ours around it: no logger, no
    callbacks, no progress bar, no model summary, no checkpoints (Lightning's own loop)."""
    job, model, train_loader, val_loader, mask_prob, mask_id, deterministic = _recipe(tmp, epochs)
    steps = len(train_loader) * epochs
    module = _BareModule(model, job.optimizer, job.scheduler, steps, mask_prob, mask_id)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                         deterministic=deterministic, num_sanity_val_steps=0, default_root_dir=str(tmp))
    start = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    return steps / (time.perf_counter() - start)


def plain_loop_steps_per_sec(tmp: Path, epochs: int) -> float:
    """The same work written by hand: the same recipe ([MASK] corruption of `mask_token_prob` of
    the tokens, AdamW + warmup-cosine, gradient clipping, deterministic kernels as the trainer
    config asks), train and validate each epoch."""
    job, model, train_loader, val_loader, mask_prob, mask_id, deterministic_cfg = _recipe(tmp, epochs)
    opt = job.optimizer(model.parameters())
    steps = len(train_loader) * epochs
    sched = job.scheduler(opt, total_steps=steps)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic_cfg)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in train_loader:
            ids = _masked(batch, mask_prob, mask_id)
            loss = F.cross_entropy(model(ids, batch["attention_mask"]).logits, batch["labels"])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            correct = sum((model(b["input_ids"], b["attention_mask"]).logits.argmax(-1) == b["labels"]).sum()
                          for b in val_loader)
        del correct
    seconds = time.perf_counter() - start
    torch.use_deterministic_algorithms(deterministic)
    return steps / seconds



# name -> what it is; each measured once a round (see interleaved_rounds)
VARIANTS = {"plain_loop": "hand-written PyTorch loop", "bare_lightning": "bare Lightning, same recipe",
            "ours_no_logger": "pipeline.train, logger=none", "ours_mlflow": "pipeline.train, logger=mlflow",
            "ours_no_resume": "  ... without resume checkpoints"}
# ratio key -> (numerator variant, denominator variant, aim or None)
PAIRED = {"ours_mlflow_over_plain_loop": ("ours_mlflow", "plain_loop", 0.97),
          "bare_lightning_over_plain_loop": ("bare_lightning", "plain_loop", None),
          "ours_mlflow_over_bare_lightning": ("ours_mlflow", "bare_lightning", None),
          "mlflow_over_no_logger": ("ours_mlflow", "ours_no_logger", 0.97),
          "resume_checkpoint_on_over_off": ("ours_mlflow", "ours_no_resume", None)}


def measure(name: str, tmp: Path, epochs: int) -> float:
    """Training steps per second of one variant (VARIANTS) trained for `epochs` in `tmp`."""
    if name == "plain_loop":
        return plain_loop_steps_per_sec(tmp, epochs)
    if name == "bare_lightning":
        return bare_lightning_steps_per_sec(tmp, epochs)
    logger = "none" if name == "ours_no_logger" else "mlflow"
    extra = ("callbacks.resume_checkpoint=null",) if name == "ours_no_resume" else ()
    return lightning_steps_per_sec(tmp, epochs, logger, extra)[0]


def interleaved_rounds(tmp: Path, epochs: int, repeats: int) -> list[dict[str, float]]:
    """`repeats` rounds, each measuring every variant once; round i starts at variant i (mod 5),
    so no variant always runs first or after the same neighbour. On a shared 2-core host a plain
    loop's steps/s drifts by 10-20% over minutes (same code, run after run): a ratio of two
    variants measured in one round cancels most of that drift, a ratio of two medians does not."""
    names = list(VARIANTS)
    rounds = []
    for i in range(repeats):
        order = names[i % len(names):] + names[: i % len(names)]
        rounds.append({name: measure(name, tmp / f"{name}{i}", epochs) for name in order})
    return rounds


def paired(rounds: list[dict[str, float]], num: str, den: str) -> tuple[float, float, float]:
    """Median, lowest and highest over rounds of num/den, each ratio within one round."""
    ratios = [r[num] / r[den] for r in rounds]
    return statistics.median(ratios), min(ratios), max(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--run-wall-vs", metavar="REV", help="also time python -m pipeline.run against REV")
    parser.add_argument("--run-wall-only", action="store_true", help="only the pipeline.run comparison")
    args = parser.parse_args()
    gc.freeze()  # as every `python -m pipeline.<entry>` does after its imports (pipeline.imports_done)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    med = statistics.median
    ratios: dict[str, float] = {}
    absolute: dict[str, object] = {"load_average_start": round(os.getloadavg()[0], 2), "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.run_wall_only:
            wall, acc = end_to_end(tmp / "e2e")
            print(f"default pipeline.train end to end: {wall:.1f} s wall, test/acc={acc}")
            absolute.update({"pipeline_train_wall_s": round(wall, 2), "pipeline_train_test_acc": float(acc)})
            rounds = interleaved_rounds(tmp, args.epochs, args.repeats)
            medians = {name: med(r[name] for r in rounds) for name in VARIANTS}
            print(f"{'variant':<38}{'steps/s (median)':>18}")
            for name, label in VARIANTS.items():
                print(f"{label:<38}{medians[name]:>18.1f}")
            print(f"paired ratios: each round runs every variant once, in a rotating order; the median of "
                  f"{args.repeats} rounds [lowest, highest]")
            for key, (num, den, aim) in PAIRED.items():
                median, low, high = paired(rounds, num, den)
                print(f"  {key:<38}{median:.3f}  [{low:.3f}, {high:.3f}]" + (f"  (aim >= {aim})" if aim else ""))
                ratios[key] = median
                absolute[f"{key}_lowest"], absolute[f"{key}_highest"] = low, high
            absolute.update({f"{name}_steps_per_s": medians[name] for name in VARIANTS})
        if args.run_wall_vs:
            before = tmp / "before"  # REV's files (git archive: no worktree, no change to .git)
            before.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.run_wall_vs], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
            runs: dict[str, list[dict[str, float]]] = {"before": [], "now": []}
            for i in range(args.repeats):
                runs["before"].append(pipeline_run(tmp / f"run-before{i}", before))
                runs["now"].append(pipeline_run(tmp / f"run-now{i}", ROOT))
            print(f"\ndefault python -m pipeline.run, {args.run_wall_vs} vs this tree, median of {args.repeats}")
            for key in runs["now"][0]:
                b = med(r.get(key, float("nan")) for r in runs["before"])
                n = med(r[key] for r in runs["now"])
                print(f"  {key:<36}{b:>10.3f}{n:>10.3f}")
                absolute[f"pipeline_run_{key}_before"] = b
                absolute[f"pipeline_run_{key}"] = n
            ratios["pipeline_run_wall_now_over_before"] = (med(r["wall_s"] for r in runs["now"])
                                                           / med(r["wall_s"] for r in runs["before"]))
    emit("train", ratios, absolute)


if __name__ == "__main__":
    main()
