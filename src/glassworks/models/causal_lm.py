"""The LightningModule of the lm task: next-token cross-entropy for any causal LM of
:mod:`glassworks.models.registry`.

Loss is taken where the batch's ``targets`` are set (answer tokens for the synthetic tasks, every
token for a text corpus: the datamodule decides). ``test/answer_acc`` is the exact match of the
greedy answer. Computed teacher-forced in one forward: greedy decoding reproduces the reference
answer exactly when, with the reference prefix, every answer token (and the closing [EOS]) is the
argmax, so the two definitions agree without a generation loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric

from glassworks.data.lm_datamodule import IGNORE_INDEX
from glassworks.models.lightning import _plain, log_global, logs_this_step
from glassworks.models.outputs import CausalLMOutput
from glassworks.models.registry import build_from_spec

Batch = dict[str, Tensor]  # see glassworks.data.lm_datamodule


def answer_exact_match(logits: Tensor, input_ids: Tensor, answer_mask: Tensor) -> Tensor:
    """(B,) 1.0 where every answer position's argmax is the next input token, for rows that have
    an answer; rows without answer positions are dropped. logits (B, T, V), ids/mask (B, T)."""
    predicted = logits[:, :-1].argmax(dim=-1)  # (B, T-1): prediction for token t + 1
    correct = (predicted == input_ids[:, 1:]) | ~answer_mask[:, :-1]  # (B, T-1)
    has_answer = answer_mask.any(dim=1)  # (B,)
    return correct.all(dim=1)[has_answer].float()


class CausalLM(pl.LightningModule):
    """Cross-entropy on the next token; metrics ``train/loss``, ``val/loss``, ``val/perplexity``,
    ``val/answer_acc``, ``test/loss``, ``test/perplexity``, ``test/answer_acc``."""

    def __init__(
        self,
        model_spec: dict,
        optimizer: Callable[[Iterable[Parameter]], Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
        mask_token_prob: float = 0.0,
        mask_id: int = 3,
    ):
        super().__init__()
        if not 0.0 <= mask_token_prob < 1.0:
            raise ValueError(f"mask_token_prob: must be in [0, 1), got {mask_token_prob}")
        # Explanations mask prompt tokens (SHAP coalitions, comprehensiveness, deletion curves);
        # corrupting a few context tokens in training keeps those inputs in distribution. Only the
        # inputs are corrupted: the targets stay the true next tokens.
        self.mask_token_prob = float(mask_token_prob)
        self.mask_id = int(mask_id)
        model_spec = _plain(model_spec)
        self.save_hyperparameters("model_spec")
        self.model = build_from_spec(model_spec)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # One metric object per split; the loss means are token-weighted (perplexity = exp).
        self.val_nll = MeanMetric()
        self.test_nll = MeanMetric()
        self.val_answer_acc = MeanMetric()
        self.test_answer_acc = MeanMetric()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                output_attentions: bool = False, last_only: bool = False) -> CausalLMOutput:
        return self.model(input_ids, attention_mask, output_attentions=output_attentions, last_only=last_only)

    def _corrupt(self, batch: Batch) -> Tensor:
        ids = batch["input_ids"]  # (B, T)
        hit = (torch.rand(ids.shape, device=ids.device) < self.mask_token_prob) & batch["context_mask"]
        return ids.masked_fill(hit, self.mask_id)

    def _loss(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Mean token NLL and the number of tokens it averages."""
        n = (targets != IGNORE_INDEX).sum()
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        return loss, n

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        ids = self._corrupt(batch) if self.mask_token_prob > 0 else batch["input_ids"]
        logits = self(ids, batch["attention_mask"]).logits  # (B, T, V)
        loss, _ = self._loss(logits, batch["targets"])
        if logs_this_step(self.trainer):
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True,
                     batch_size=ids.shape[0])
        return loss

    def _evaluate(self, batch: Batch, split: str, nll: MeanMetric, acc: MeanMetric) -> None:
        logits = self(batch["input_ids"], batch["attention_mask"]).logits  # (B, T, V)
        loss, n = self._loss(logits, batch["targets"])
        if n > 0:
            nll.update(loss, weight=n)
        matches = answer_exact_match(logits, batch["input_ids"], batch["answer_mask"])  # (B',)
        if matches.numel() > 0:
            acc.update(matches)

    def _log_epoch(self, split: str, nll: MeanMetric, acc: MeanMetric) -> None:
        # compute() syncs across DDP ranks; logged once per epoch, after every batch is in.
        if nll.update_count > 0:
            mean = nll.compute()
            log_global(self, f"{split}/loss", mean, prog_bar=split == "val")
            log_global(self, f"{split}/perplexity", torch.exp(mean))
        if acc.update_count > 0:
            log_global(self, f"{split}/answer_acc", acc.compute(), prog_bar=split == "val")
        nll.reset()
        acc.reset()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_nll, self.val_answer_acc)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val", self.val_nll, self.val_answer_acc)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_nll, self.test_answer_acc)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test", self.test_nll, self.test_answer_acc)

    def configure_optimizers(self) -> Any:
        opt = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return opt
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("scheduler: needs a finite number of steps; set trainer max_epochs or max_steps")
        sched = self.scheduler_factory(opt, total_steps=int(total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
