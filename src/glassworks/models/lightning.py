"""The LightningModule that trains any model from :mod:`glassworks.models.registry`.

The network is described by a plain-dict ``model_spec`` (see ``TransformerClassifier.spec``) so
the checkpoint's hyperparameters hold only plain containers and load with
``torch.load(path, weights_only=True)``. Optimizer and scheduler arrive as factories (Hydra
``_partial_: true`` targets) and are completed in :meth:`configure_optimizers`; they are not
hyperparameters, so re-loading a checkpoint takes them as keyword arguments again.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from glassworks.models.outputs import ClassifierOutput
from glassworks.models.registry import build_from_spec
from glassworks.training.distributed import agree, group_rank_and_size

log = logging.getLogger(__name__)

Batch = dict[str, Tensor]  # input_ids (B, T), attention_mask (B, T), labels (B,)


def logs_this_step(trainer: pl.Trainer) -> bool:
    """Whether Lightning writes this training step's ``on_step`` metrics to the loggers (every
    ``log_every_n_steps`` steps, and the step a stop is requested on): the same check its
    LearningRateMonitor makes. A step value logged on any other step reaches no logger, and
    ``self.log`` costs ~1 ms a call on CPU (metadata, device moves), ~3% of a default step
    (bench/bench_train.py); the progress bar shows the last logged value."""
    return trainer._logger_connector.should_update_logs


def log_global(module: pl.LightningModule, name: str, value: Tensor, prog_bar: bool = False) -> None:
    """Log an epoch value that is already the same on every DDP rank (a torchmetrics
    ``compute()``, which syncs the metric's state). Without ``sync_dist`` Lightning warns under DDP
    that the value should be synced (three such warnings a validation on rank 0); syncing it with
    ``max`` costs one all-reduce and, unlike the default mean, gives back every bit of equal
    values (a mean over 3 ranks can round 0.75 to 0.7500001). One process: no sync at all."""
    module.log(name, value, prog_bar=prog_bar, sync_dist=True, reduce_fx="max")


# test/acc (macro-averaged: always predicting one class scores 1/K) at most this far above 1/K
# is reported as chance level. The metric is float32: 0.55 arrives as 0.55000001907, hence the slack.
CHANCE_MARGIN = 0.05
_FLOAT32_SLACK = 1e-6


def warn_at_chance(test_acc: float, n_classes: int) -> bool:
    """Log a warning when `test_acc` is at chance level for `n_classes`; True if it was."""
    chance = 1.0 / n_classes
    if not test_acc <= chance + CHANCE_MARGIN + _FLOAT32_SLACK:
        return False
    log.warning(
        "test/acc=%.3f is at chance level for %d classes (%.3f: the accuracy is macro-averaged, so "
        "always predicting one class scores that): the model learned nothing the test split rewards. "
        "Look at the data warnings above (truncation can cut the evidence out of a text), or train "
        "longer (trainer.max_epochs) or at another learning rate (optimizer.lr)",
        test_acc, n_classes, chance,
    )
    return True


def restored_updates(metric: Metric) -> bool:
    """Whether `metric` holds updates a checkpoint restored since nothing updated it in this
    process. torchmetrics counts only its own ``update`` calls (``update_called`` is False after
    ``load_state_dict``), but a fit resumed from a file written after an epoch's last batch (the
    resume checkpoint after validation) goes straight to that epoch's end, whose train/acc is the
    restored state alone."""
    return not metric.update_called and any(
        bool(torch.count_nonzero(state)) for state in metric.metric_state.values() if isinstance(state, Tensor))


def summed_states(metric: Metric, prefix: str) -> dict[str, Tensor]:
    """`metric`'s count states summed over the process group's ranks (one all-reduce each; a single
    process's own), keyed as in the module's state_dict. Collective: every rank must call it. Only
    for metrics whose states are counts reduced by sum (accuracy, F1)."""
    several = group_rank_and_size()[1] > 1
    summed = {}
    for name, state in metric.metric_state.items():
        if isinstance(state, Tensor):
            total = state.detach().clone()
            if several:
                torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
            summed[prefix + name] = total.cpu()
    return summed


def rank_zero_states(state_dict: Mapping[str, Any], metric: Metric, prefix: str) -> dict[str, Tensor]:
    """The state_dict entries of `metric` that a rank other than 0 loads instead of the file's:
    zeros, so the summed counts of `summed_states` are counted once (by rank 0)."""
    if group_rank_and_size()[0] == 0:
        return {}
    return {prefix + name: torch.zeros_like(state_dict[prefix + name]) for name in metric.metric_state
            if isinstance(state_dict.get(prefix + name), Tensor)}


def _plain(value: Any) -> Any:
    """Deep-convert mappings/sequences (e.g. OmegaConf containers from Hydra) to dict/list, so
    the saved hyperparameters unpickle under ``weights_only=True``."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


class TextClassifier(pl.LightningModule):
    """Cross-entropy training of a sequence classifier; metrics named ``split/metric``."""

    def __init__(
        self,
        model_spec: dict,
        optimizer: Callable[[Iterable[Parameter]], Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
        label_names: list[str] | None = None,
        mask_token_prob: float = 0.0,
        mask_id: int = 3,
        net: torch.nn.Module | None = None,
    ):
        super().__init__()
        if not 0.0 <= mask_token_prob < 1.0:
            raise ValueError(f"mask_token_prob: must be in [0, 1), got {mask_token_prob}")
        # Explanations perturb inputs by replacing tokens with [MASK] (SHAP's coalitions, ERASER's
        # comprehensiveness/sufficiency, deletion curves). A model that never saw [MASK] answers
        # those inputs out of distribution (Hase et al. 2021); masking a few training tokens
        # keeps them in distribution.
        self.mask_token_prob = float(mask_token_prob)
        self.mask_id = int(mask_id)
        # Rebind the locals before save_hyperparameters reads them from this frame.
        model_spec = _plain(model_spec)
        label_names = None if label_names is None else [str(n) for n in label_names]
        self.save_hyperparameters("model_spec", "label_names")
        # `net`: an already built model of this spec (pretrained weights, frozen layers); without
        # it the spec's untrained architecture, whose weights a checkpoint then fills in.
        if net is not None and _plain(getattr(net, "spec", None)) != model_spec:
            raise ValueError("net: its spec differs from model_spec")
        self.model = net if net is not None else build_from_spec(model_spec)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_names = label_names

        n_classes = int(model_spec["n_classes"])
        if label_names is not None and len(label_names) != n_classes:
            raise ValueError(
                f"label_names: {len(label_names)} names for n_classes={n_classes} in model_spec"
            )
        self.n_classes = n_classes
        # One metric object per split: sharing one would mix train and val state.
        # Updated every training step: labels were checked when the data was loaded, so skip
        # torchmetrics' per-call input validation (a torch.unique of the targets each step).
        self.train_acc = MulticlassAccuracy(num_classes=n_classes, validate_args=False)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc = MulticlassAccuracy(num_classes=n_classes)
        self.val_f1 = MulticlassF1Score(num_classes=n_classes, average="macro")
        self.test_acc = MulticlassAccuracy(num_classes=n_classes)
        self.test_f1 = MulticlassF1Score(num_classes=n_classes, average="macro")
        # split -> (loss, acc, f1), each counted a batch and logged once an epoch (_evaluate).
        self._eval_metrics = {"val": (self.val_loss, self.val_acc, self.val_f1),
                              "test": (self.test_loss, self.test_acc, self.test_f1)}
        # train/acc accumulates over an epoch: in the checkpoint, a run resumed mid-epoch reports
        # the same epoch accuracy as an uninterrupted one.
        self.train_acc.persistent(True)

        # The training batches' predicted classes and labels not yet counted into train_acc, counted
        # in one update when the epoch ends or a checkpoint is taken (_count_train_predictions).
        # Its state is integer counts, so one update of the concatenated batches gives the same state
        # as one a step; a torchmetrics update a step was ~2% of a default fit (bench_train.py).
        self._uncounted: list[tuple[Tensor, Tensor]] = []

        # Throughput bookkeeping (not state: reset every epoch).
        self._epoch_tokens: Tensor | None = None
        self._epoch_step_seconds = 0.0
        self._batch_started = 0.0

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        output_attentions: bool = False,
    ) -> ClassifierOutput:
        return self.model(input_ids, attention_mask, output_attentions=output_attentions)

    def _shared_step(self, batch: Batch) -> tuple[Tensor, Tensor]:
        logits = self(batch["input_ids"], batch["attention_mask"]).logits  # (B, K)
        loss = F.cross_entropy(logits, batch["labels"])
        return loss, logits

    # ---- training -------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._epoch_tokens = torch.zeros((), dtype=torch.long, device=self.device)
        self._epoch_step_seconds = 0.0

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        self._batch_started = time.perf_counter()

    def _mask_tokens(self, batch: Batch) -> Batch:
        ids = batch["input_ids"]  # (B, T)
        maskable = batch["attention_mask"].bool()
        maskable[:, 0] = False  # [CLS] is never masked, as in the explainers
        hit = (torch.rand(ids.shape, device=ids.device) < self.mask_token_prob) & maskable
        return {**batch, "input_ids": ids.masked_fill(hit, self.mask_id)}

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        if self.mask_token_prob > 0:
            batch = self._mask_tokens(batch)
        loss, logits = self._shared_step(batch)
        batch_size = batch["labels"].shape[0]
        # Summed on device: calling .item() every step would force a GPU sync.
        if self._epoch_tokens is not None:
            self._epoch_tokens += batch["attention_mask"].sum()
        # Counted later, all at once (see _uncounted); update(), not forward(): forward also computes
        # the batch's accuracy, which on_step=False never shows.
        self._uncounted.append((logits.detach().argmax(dim=-1), batch["labels"]))  # (B,), (B,)
        if logs_this_step(self.trainer):
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True,
                     batch_size=batch_size)
        # train/acc is logged once, in on_train_epoch_end: handing Lightning the Metric object
        # here made every step move it and deep-copy its log metadata.
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        # Runs after backward and the optimizer step, so the interval covers the whole training
        # step but neither data loading nor validation. On CUDA the host may run ahead of the
        # device per step; over an epoch the queue back-pressure makes the sum a fair estimate.
        self._epoch_step_seconds += time.perf_counter() - self._batch_started

    def _count_train_predictions(self) -> None:
        """train_acc.update with every training batch predicted since the last count."""
        if self._uncounted:
            predicted, labels = (torch.cat(parts) for parts in zip(*self._uncounted, strict=True))
            self._uncounted = []
            self.train_acc.update(predicted, labels)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning took the state_dict before this hook: the train_acc entries are written again
        # below, with every step trained so far counted.
        self._count_train_predictions()
        # Under DDP each rank counts its own shard's train/acc and the file (written by rank 0)
        # would hold rank 0's counts alone, which every rank of a resumed fit then loads: the
        # epoch's accuracy counted rank 0's part once per rank and the others' not at all. The file
        # holds every rank's counts summed (every rank runs this hook; it is collective), and a
        # resumed fit gives them to rank 0 alone (on_load_checkpoint).
        checkpoint["state_dict"].update(summed_states(self.train_acc, "train_acc."))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"].update(rank_zero_states(checkpoint["state_dict"], self.train_acc, "train_acc."))

    def on_train_epoch_end(self) -> None:
        self._count_train_predictions()
        # Every rank or none: compute() and sync_dist are collectives, and after a DDP resume
        # into this epoch's end only rank 0 holds counts (on_load_checkpoint).
        (counted,) = agree(self.trainer, self.train_acc.update_called or restored_updates(self.train_acc))
        if counted:
            with warnings.catch_warnings():
                # A fit resumed into this epoch's end (see restored_updates) computes the epoch's
                # restored state, which torchmetrics warns about as "called before update".
                warnings.filterwarnings("ignore", "The ``compute`` method of metric", UserWarning)
                log_global(self, "train/acc", self.train_acc.compute())
            self.train_acc.reset()
        if self._epoch_tokens is None or self._epoch_step_seconds <= 0.0:
            return
        tokens_per_sec = self._epoch_tokens.item() / self._epoch_step_seconds
        # Summed over DDP ranks: the figure of interest is the whole job's throughput.
        self.log("train/tokens_per_sec", float(tokens_per_sec), on_epoch=True,
                 sync_dist=True, reduce_fx="sum")

    # ---- evaluation -----------------------------------------------------------------------
    def _evaluate(self, batch: Batch, split: str) -> None:
        """Count one validation or test batch into `split`'s metrics, logged once an epoch by
        `_log_epoch`: three ``self.log`` calls a batch cost ~0.7% of a default fit on CPU."""
        loss, logits = self._shared_step(batch)
        labels = batch["labels"]
        loss_mean, acc, f1 = self._eval_metrics[split]
        loss_mean.update(loss.detach(), weight=labels.shape[0])  # the epoch's loss: a mean over examples
        acc.update(logits, labels)
        f1.update(logits, labels)

    def _log_epoch(self, split: str) -> float | None:
        """Log `split`'s epoch loss, accuracy and macro F1 and reset them; the accuracy, or None
        when no batch was counted. compute() syncs each metric's state across DDP ranks (the loss
        an example-weighted mean over every rank's examples), so every rank logs the global value."""
        loss_mean, acc, f1 = self._eval_metrics[split]
        if not acc.update_called:
            return None
        accuracy = acc.compute()
        log_global(self, f"{split}/loss", loss_mean.compute(), prog_bar=split == "val")
        log_global(self, f"{split}/acc", accuracy, prog_bar=split == "val")
        log_global(self, f"{split}/f1", f1.compute())
        for metric in (loss_mean, acc, f1):
            metric.reset()
        return float(accuracy)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        # A model that learned nothing still finishes a run with every artifact and figure; say so.
        test_acc = self._log_epoch("test")
        if test_acc is not None:
            warn_at_chance(test_acc, self.n_classes)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Class probabilities (B, K); ``labels`` may be absent."""
        logits = self(batch["input_ids"], batch.get("attention_mask")).logits  # (B, K)
        return logits.softmax(dim=-1)

    # ---- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        # A model may split its parameters into groups (HF encoders: no decay on LayerNorm/bias,
        # frozen layers left out).
        groups = getattr(self.model, "parameter_groups", None)
        opt = self.optimizer_factory(groups() if groups is not None else self.parameters())
        if self.scheduler_factory is None:
            return opt
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(
                "scheduler: needs a finite number of steps; set trainer max_epochs or max_steps"
            )
        sched = self.scheduler_factory(opt, total_steps=int(total))
        # Per-step updates: warmup lengths are counted in optimizer steps, not epochs.
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
