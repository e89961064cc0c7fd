"""The Trainer's arguments, checked against the real ``pl.Trainer.__init__`` before any run exists.

Hydra suggests ``+trainer.<key>=`` for a key the config lacks, so a typo (``+trainer.max_epoch=2``)
reaches the Trainer's constructor only when training starts, after the MLflow run was created.
Checking the names against the constructor's signature here fails it first, with a suggestion.
"""

from __future__ import annotations

import difflib
import logging
import inspect
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import pytorch_lightning as pl

from glassworks.validation import ConfigError


class UnknownConfigKey(ConfigError):
    """A config key no constructor accepts: says which and, if one is close, which was meant."""

    def __init__(self, key: str, known: Iterable[str]) -> None:
        name = key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
        ValueError.__init__(self, f"unknown config key {key}" + (f"; did you mean {close[0]}?" if close else ""))
        self.key = key


@cache
def trainer_parameters() -> frozenset[str]:
    """Every keyword ``pl.Trainer(...)`` accepts (from the installed Lightning, not a copied list)."""
    params = inspect.signature(pl.Trainer.__init__).parameters
    return frozenset(n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD)


def check_trainer_args(args: Mapping[str, Any], prefix: str = "trainer") -> None:
    """Raise :class:`UnknownConfigKey` for the first key ``pl.Trainer`` does not take.

    Hydra's own keys (``_target_``, ``_partial_``, ...) are skipped.
    """
    known = trainer_parameters()
    for key in args:
        if not str(key).startswith("_") and key not in known:
            raise UnknownConfigKey(f"{prefix}.{key}", sorted(known))


# Where the training runs and what it logs to is decided later (devices, ranks, our logger and
# callbacks): the value check builds a plain one-CPU Trainer with everything else as configured.
_PLACEMENT = ("_target_", "accelerator", "strategy", "devices", "num_nodes", "plugins", "precision",
              "logger", "callbacks", "default_root_dir", "sync_batchnorm", "profiler")


def check_trainer_values(args: Mapping[str, Any], prefix: str = "trainer") -> None:
    """Raise :class:`ConfigError` for a value ``pl.Trainer``'s constructor refuses (``max_epochs=-5``,
    ``val_check_interval=-0.5``), named by its key; costs one Trainer construction (~10 ms)."""
    from pytorch_lightning.plugins.environments import LightningEnvironment
    from pytorch_lightning.utilities.exceptions import MisconfigurationException

    values = {k: v for k, v in args.items() if k not in _PLACEMENT}
    # The real Trainer announces its devices and modes when training starts: this one stays quiet.
    quiet = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        # A plain cluster environment: under torchrun/SLURM the launcher's world size belongs to
        # the real Trainer, not to this one-device check.
        pl.Trainer(accelerator="cpu", devices=1, plugins=[LightningEnvironment()], logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False,
                   **{k: v for k, v in values.items() if k not in ("enable_checkpointing", "enable_progress_bar",
                                                                   "enable_model_summary")})
    except (MisconfigurationException, ValueError, TypeError) as error:
        message = str(error)
        key = next((k for k in values if f"`{k}`" in message or f" {k}" in message), None)
        raise ConfigError(f"{prefix}.{key}" if key else prefix, message) from error
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


_GPU_ACCELERATORS = ("gpu", "cuda")


def check_placement(args: Mapping[str, Any], launched_outside: bool, cuda_devices: int,
                    prefix: str = "trainer") -> None:
    """Raise :class:`ConfigError` for a placement the Trainer would only refuse once the run exists
    (a GPU on a machine without one), or would carry out by starting the whole command again in
    every process: ``devices`` > 1 without a strategy of ours, not under torchrun/srun
    (`launched_outside`), where Lightning's DDP re-runs the command line once a rank, each rank
    opening a run of its own and running every later stage. `cuda_devices`: the machine's count."""
    accelerator = str(args.get("accelerator") or "auto")
    if accelerator in _GPU_ACCELERATORS and cuda_devices == 0:
        raise ConfigError(f"{prefix}.accelerator", f"{accelerator}: this machine has no CUDA device; "
                          "trainer=default picks what the machine has, trainer=cpu the CPU")
    if launched_outside:
        return
    devices = args.get("devices", "auto")
    on_gpu = accelerator in _GPU_ACCELERATORS or (accelerator == "auto" and cuda_devices > 0)
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif str(devices) in ("-1", "auto"):
        count = cuda_devices if on_gpu else 1
    else:
        count = int(devices) if str(devices).lstrip("-").isdigit() else 1
    processes = count * int(args.get("num_nodes") or 1)
    if processes > 1 and str(args.get("strategy") or "auto") in ("auto", "ddp"):
        nodes = f" on num_nodes={args.get('num_nodes')}" if int(args.get("num_nodes") or 1) > 1 else ""
        raise ConfigError(f"{prefix}.devices", f"{devices}{nodes}: {processes} processes need "
                          "the DDP strategy of trainer=ddp_cpu (CPU processes over gloo) or trainer=ddp "
                          f"(GPUs), which spawn the ranks for training alone: e.g. trainer=ddp_cpu "
                          f"trainer.devices={devices}. Lightning's own would start this whole command again "
                          "in every process, each with a run of its own (several nodes: torchrun, README)")
