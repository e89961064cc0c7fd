"""The Trainer's arguments, checked against the real ``pl.Trainer.__init__`` before any run exists.

Hydra suggests ``+trainer.<key>=`` for a key the config lacks, so a typo (``+trainer.max_epoch=2``)
reaches the Trainer's constructor only when training starts, after the MLflow run was created.
Checking the names against the constructor's signature here fails it first, with a suggestion.
"""

from __future__ import annotations

import difflib
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
