"""The explain and robustness groups' own values (not the explainers'), checked before any run.

The explainers and the attack validate their budgets in their constructors; what the stages read
directly (how many examples, heatmaps, curve lengths) is checked here, so ``explain.n_examples=0``
fails in ``build_job`` with one line instead of after training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from glassworks.validation import ConfigError, Validated

T = TypeVar("T", bound=Validated)


@dataclass
class ExplainSettings(Validated):
    """A key the group lacks (the logged config of an older run) is None and not checked."""

    methods: list[str] | None = None
    n_examples: int | None = None
    seed: int | None = None
    n_heatmaps: int | None = None

    def validate(self) -> None:
        _at_least(self, "n_examples", 1)
        _at_least(self, "n_heatmaps", 0, " (0: no heatmaps)")
        _at_least(self, "seed", 0)


@dataclass
class RobustnessSettings(Validated):
    enabled: bool | None = None
    curve_k: int | None = None
    n_stability: int | None = None
    stability_examples: int | None = None  # None in the config too: every example
    max_html_examples: int | None = None
    seed: int | None = None

    def validate(self) -> None:
        _at_least(self, "curve_k", 1)
        _at_least(self, "n_stability", 0, " (0: no stability)")
        _at_least(self, "stability_examples", 1, " or null (every example)")
        _at_least(self, "max_html_examples", 0)
        _at_least(self, "seed", 0)


def _at_least(settings: Validated, key: str, low: int, note: str = "") -> None:
    value = getattr(settings, key)
    settings.require(value is None or value >= low, key, f"must be >= {low}{note}, got {value}")


def check_settings(cls: type[T], values: Mapping[str, Any], prefix: str) -> T:
    """``cls`` built from the group's values of its own fields; a bad one raises ConfigError
    named ``<prefix>.<key>``."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    try:
        return cls(**{n: values[n] for n in names if n in values})
    except ConfigError as error:
        raise ConfigError(f"{prefix}.{error.key}", str(error).split(": ", 1)[1]) from error
