"""Shared by bench_lm.py and bench_explain.py: a decoder_tiny trained on an LM task, and SHAP's
seconds per generated token against its forward-pass floor (the same number of masked prefixes
pushed through the model as plain batches of up to 512, every step's prefixes of one length
together, as the explainer's shared forwards may)."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from glassworks.data.lm_datamodule import LMDataModule
from glassworks.explain.generation import StepAttribution
from glassworks.explain.generation_target import GenerationStep, last_position_values, step_targets
from glassworks.explain.predict import AUTO, resolve_max_tokens, rows_per_chunk
from glassworks.models.causal_lm import CausalLM
from glassworks.models.schedules import warmup_cosine

CONF = Path(__file__).resolve().parents[1] / "conf"


def train_lm(source, epochs: int, seed: int) -> tuple[CausalLM, LMDataModule, float, float]:
    """``model=decoder_tiny`` (read from its config file) trained on ``source`` with the train.yaml
    optimiser/schedule/masking defaults and trainer/default.yaml's gradient clipping; (module,
    datamodule, fit seconds, test/answer_acc)."""
    pl.seed_everything(seed, verbose=False)
    dm = LMDataModule(source, batch_size=64, max_length=32, seed=seed)
    dm.prepare()
    config = instantiate(OmegaConf.load(CONF / "model" / "decoder_tiny.yaml"))
    module = CausalLM(config.build(dm.vocab_size, dm.vocab.pad_id).spec,
                      functools.partial(torch.optim.AdamW, lr=0.003, weight_decay=0.01),
                      functools.partial(warmup_cosine, warmup_ratio=0.1), mask_token_prob=0.1,
                      mask_id=dm.vocab.mask_id)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", gradient_clip_val=1.0, logger=False,
                         enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, dm)
    seconds = time.perf_counter() - start
    acc = trainer.test(module, dm, verbose=False)[0]["test/answer_acc"]
    return module, dm, seconds, acc


def shap_vs_floor(model: torch.nn.Module, steps: list[GenerationStep], attributions: list[StepAttribution],
                  mask_id: int, seed: int = 0) -> dict[str, float]:
    """SHAP ms per generated token, the floor's ms for as many masked prefixes, and their ratio."""
    shap_runs = [a for a in attributions if a.method == "shap"]
    shap_seconds = sum(a.seconds for a in shap_runs)
    n_evals = [a.extras["n_evals"] for a in shap_runs]
    rng = np.random.default_rng(seed)
    by_width: dict[int, tuple[list, list]] = {}  # prefix length -> (row blocks, target blocks)
    for step, n in zip(steps, n_evals):
        rows = np.tile(np.asarray(step.prefix_ids), (n, 1))  # (n, T): [BOS] kept, others masked at random
        rows[:, 1:][rng.random((n, step.n_positions - 1)) < 0.5] = mask_id
        blocks = by_width.setdefault(step.n_positions, ([], []))
        blocks[0].append(rows)
        blocks[1].append(np.tile(step_targets(step), (n, 1)))
    max_tokens = resolve_max_tokens(model, AUTO)
    start = time.perf_counter()
    for width, (row_blocks, target_blocks) in by_width.items():  # every step's rows of one length together
        rows, targets = np.concatenate(row_blocks), np.concatenate(target_blocks)  # (N, T), (N, 2)
        size = rows_per_chunk(width, 512, max_tokens)
        for first in range(0, len(rows), size):
            last_position_values(model, rows[first:first + size], targets[first:first + size])
    floor = time.perf_counter() - start
    return {"shap_ms_per_token": 1000 * shap_seconds / len(steps), "floor_ms_per_token": 1000 * floor / len(steps),
            "evals_per_token": float(np.mean(n_evals)), "ratio": shap_seconds / floor}
