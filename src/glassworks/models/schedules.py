"""Learning-rate schedules, completed in ``TextClassifier.configure_optimizers``.

Configs reference them as ``_partial_: true`` targets; Lightning supplies ``optimizer`` and
``total_steps`` (``trainer.estimated_stepping_batches``) at fit time.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_ratio: float = 0.1,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warmup from 0 to the base LR over ``int(warmup_ratio * total_steps)`` steps, then
    cosine decay to ``min_lr_ratio * base_lr`` at ``total_steps`` (held there afterwards).

    Multipliers: step 0 -> 0 (or 1 without warmup), step ``warmup_steps`` -> 1,
    step ``total_steps`` -> ``min_lr_ratio``.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps: expected a positive int, got {total_steps!r}")
    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio: expected 0 <= warmup_ratio < 1, got {warmup_ratio!r}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio: expected 0 <= min_lr_ratio <= 1, got {min_lr_ratio!r}")

    warmup_steps = int(warmup_ratio * total_steps)
    decay_steps = total_steps - warmup_steps  # >= 1 because warmup_ratio < 1

    # A closure (not a callable object) keeps LambdaLR.state_dict() free of pickled objects,
    # so Lightning checkpoints stay loadable with weights_only=True.
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, multiplier)
