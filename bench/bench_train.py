"""Train-stage benchmark: python bench/bench_train.py [--epochs 3] [--repeats 5] [--run-wall-vs REV]

Prints, measured side by side in this one process:
1. the default ``python -m pipeline.train`` end to end (imports included, a subprocess) and its
   test accuracy;
2. Lightning + our module vs a hand-written PyTorch loop on the same model, data and batch
   size: training steps per second (ratio); and between them bare Lightning (the same recipe in a
   minimal LightningModule: no logger, callbacks, progress bar, summary or checkpoints), which
   splits the gap into Lightning's own loop (bare/plain) and what glassworks adds (ours/bare);
3. tracking overhead: logger=mlflow vs logger=none, same config (ratio);
4. resume checkpoints (every 50 steps and each validation, atomic writes) vs none (ratio);
   and for every variant where a fit's time went (``Phases``): inside the training steps,
   between them (data loading, callbacks' batch hooks, logging), and the rest (validation,
   checkpoints, each epoch's end, the fit's start and end), seconds a fit, so what ours adds to
   bare Lightning shows where it is (on a drifting host the rest is the steadiest of the three).
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

from bench.results import emit, paired  # noqa: E402
from pipeline.stage import build_job, open_run  # noqa: E402
from pipeline.train import train  # noqa: E402
from pipeline.compose import config_at  # noqa: E402

# The default config but for the test split and early stopping (a fixed number of steps); the
# progress bar is the default one (until 2026-12-01 this nulled it, and Lightning then added its
# own RichProgressBar, drawn after every batch).
COMMON = ["trainer=cpu", "test=false", "callbacks.early_stopping=null"]


def logger_overrides(logger: str) -> list[str]:
    return [f"logger={logger}"] + (["logger.system_metrics=false"] if logger == "mlflow" else [])


class Phases:
    """Where one fit's wall time went: `inside` the training steps (forward, backward, optimizer
    step, and the module's own batch hooks), `between` two steps of one epoch (data loading,
    every callback's batch hooks, the logging), and the `rest` of `total` (validation, checkpoints,
    each epoch's end, the fit's start and end). In a Lightning fit `first` goes first in the
    callback list (its batch-end hook runs before the others') and `last` goes last (its
    batch-start hook runs after the others', Lightning moving only Checkpoint callbacks, such as
    the resume one, behind it). The plain loop stamps the same phases by hand."""

    def __init__(self) -> None:
        self.inside = self.between = self.total = 0.0
        self._started: float | None = None
        self._ended: float | None = None
        phases = self

        class First(pl.Callback):
            def on_train_epoch_start(self, trainer, pl_module) -> None:
                phases.epoch_started()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                phases.batch_ended()

        class Last(pl.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
                phases.batch_started()

        self.first, self.last = First(), Last()

    def batch_started(self) -> None:
        now = time.perf_counter()
        if self._ended is not None:
            self.between += now - self._ended
        self._started = now

    def batch_ended(self) -> None:
        self._ended = time.perf_counter()
        self.inside += self._ended - self._started

    def epoch_started(self) -> None:
        self._ended = None  # the gap across an epoch's end belongs to the rest

    KEYS = ("inside_s", "between_s", "rest_s")  # seconds(), in the order the table prints them

    def seconds(self) -> dict[str, float]:
        return dict(zip(self.KEYS, (self.inside, self.between, self.total - self.inside - self.between), strict=True))


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


def lightning_steps_per_sec(tmp: Path, epochs: int, logger: str, extra: tuple[str, ...] = (),
                            phases: Phases | None = None) -> tuple[float, int]:
    cfg = config_at(tmp, [*COMMON, f"trainer.max_epochs={epochs}", *logger_overrides(logger), *extra])
    job = build_job(cfg)
    if phases is not None:
        job.callbacks = [phases.first, *job.callbacks, phases.last]
    open_run(job)
    with job.tracker.lifecycle("train"):
        result = train(job)
    if phases is not None:
        phases.total = result.fit_seconds
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


def bare_lightning_steps_per_sec(tmp: Path, epochs: int, phases: Phases | None = None) -> float:
    """The plain loop's recipe run by Lightning with nothing of ours around it: no logger, no
    callbacks, no progress bar, no model summary, no checkpoints (Lightning's own loop)."""
    job, model, train_loader, val_loader, mask_prob, mask_id, deterministic = _recipe(tmp, epochs)
    steps = len(train_loader) * epochs
    module = _BareModule(model, job.optimizer, job.scheduler, steps, mask_prob, mask_id)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                         deterministic=deterministic, num_sanity_val_steps=0, default_root_dir=str(tmp),
                         callbacks=[phases.first, phases.last] if phases is not None else None)
    start = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    seconds = time.perf_counter() - start
    if phases is not None:
        phases.total = seconds
    return steps / seconds


def plain_loop_steps_per_sec(tmp: Path, epochs: int, phases: Phases | None = None) -> float:
    """The same work written by hand: the same recipe ([MASK] corruption of `mask_token_prob` of
    the tokens, AdamW + warmup-cosine, gradient clipping, deterministic kernels as the trainer
    config asks), train and validate each epoch."""
    job, model, train_loader, val_loader, mask_prob, mask_id, deterministic_cfg = _recipe(tmp, epochs)
    opt = job.optimizer(model.parameters())
    steps = len(train_loader) * epochs
    sched = job.scheduler(opt, total_steps=steps)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic_cfg)
    if phases is None:
        phases = Phases()
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        phases.epoch_started()
        for batch in train_loader:
            phases.batch_started()
            ids = _masked(batch, mask_prob, mask_id)
            loss = F.cross_entropy(model(ids, batch["attention_mask"]).logits, batch["labels"])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            phases.batch_ended()
        model.eval()
        with torch.no_grad():
            correct = sum((model(b["input_ids"], b["attention_mask"]).logits.argmax(-1) == b["labels"]).sum()
                          for b in val_loader)
        del correct
    seconds = time.perf_counter() - start
    phases.total = seconds
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


def measure(name: str, tmp: Path, epochs: int, phases: Phases) -> float:
    """Training steps per second of one variant (VARIANTS) trained for `epochs` in `tmp`; where
    the fit's time went into `phases`."""
    if name == "plain_loop":
        return plain_loop_steps_per_sec(tmp, epochs, phases)
    if name == "bare_lightning":
        return bare_lightning_steps_per_sec(tmp, epochs, phases)
    logger = "none" if name == "ours_no_logger" else "mlflow"
    extra = ("callbacks.resume_checkpoint=null",) if name == "ours_no_resume" else ()
    return lightning_steps_per_sec(tmp, epochs, logger, extra, phases)[0]


def interleaved_rounds(tmp: Path, epochs: int,
                       repeats: int) -> tuple[list[dict[str, float]], list[dict[str, dict[str, float]]]]:
    """`repeats` rounds, each measuring every variant once; round i starts at variant i (mod 5),
    so no variant always runs first or after the same neighbour. On a shared 2-core host a plain
    loop's steps/s drifts by 10-20% over minutes (same code, run after run): a ratio of two
    variants measured in one round cancels most of that drift, a ratio of two medians does not.
    Returns each round's steps/s and its ``Phases.seconds()`` by variant."""
    names = list(VARIANTS)
    rounds, phase_rounds = [], []
    for i in range(repeats):
        order = names[i % len(names):] + names[: i % len(names)]
        phases = {name: Phases() for name in order}
        rounds.append({name: measure(name, tmp / f"{name}{i}", epochs, phases[name]) for name in order})
        phase_rounds.append({name: p.seconds() for name, p in phases.items()})
    return rounds, phase_rounds


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
            rounds, phase_rounds = interleaved_rounds(tmp, args.epochs, args.repeats)
            medians = {name: med(r[name] for r in rounds) for name in VARIANTS}
            phase_medians = {name: {k: med(r[name][k] for r in phase_rounds) for k in Phases.KEYS}
                             for name in VARIANTS}
            print(f"{'variant':<38}{'steps/s (median)':>18}   seconds a fit (medians): inside the steps, "
                  "between them, the rest (validation, checkpoints, epoch ends, start and end)")
            for name, label in VARIANTS.items():
                phase_cells = " ".join(f"{phase_medians[name][k]:8.3f}" for k in Phases.KEYS)
                print(f"{label:<38}{medians[name]:>18.1f}   {phase_cells}")
            print(f"paired ratios: each round runs every variant once, in a rotating order; the median of "
                  f"{args.repeats} rounds [lowest, highest]")
            for key, (num, den, aim) in PAIRED.items():
                median, low, high = paired(rounds, num, den)
                print(f"  {key:<38}{median:.3f}  [{low:.3f}, {high:.3f}]" + (f"  (aim >= {aim})" if aim else ""))
                ratios[key] = median
                absolute[f"{key}_lowest"], absolute[f"{key}_highest"] = low, high
            absolute.update({f"{name}_steps_per_s": medians[name] for name in VARIANTS})
            absolute.update({f"{name}_{k}": v for name in VARIANTS for k, v in phase_medians[name].items()})
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
