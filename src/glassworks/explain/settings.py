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
    methods: list[str]
    n_examples: int
    seed: int
    n_heatmaps: int

    def validate(self) -> None:
        self.require(self.n_examples >= 1, "n_examples", f"must be >= 1, got {self.n_examples}")
        self.require(self.n_heatmaps >= 0, "n_heatmaps", f"must be >= 0 (0: no heatmaps), got {self.n_heatmaps}")
        self.require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")


@dataclass
class RobustnessSettings(Validated):
    enabled: bool
    curve_k: int
    n_stability: int
    stability_examples: int | None
    max_html_examples: int
    seed: int

    def validate(self) -> None:
        self.require(self.curve_k >= 1, "curve_k", f"must be >= 1, got {self.curve_k}")
        self.require(self.n_stability >= 0, "n_stability", f"must be >= 0 (0: no stability), got {self.n_stability}")
        self.require(self.stability_examples is None or self.stability_examples >= 1, "stability_examples",
                     f"must be >= 1 or null (every example), got {self.stability_examples}")
        self.require(self.max_html_examples >= 0, "max_html_examples", f"must be >= 0, got {self.max_html_examples}")
        self.require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")


def check_settings(cls: type[T], values: Mapping[str, Any], prefix: str) -> T:
    """``cls`` built from the group's values of its own fields; a bad one raises ConfigError named
    ``<prefix>.<key>`` (a missing one too)."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    missing = [n for n in names if n not in values]
    if missing:
        raise ConfigError(f"{prefix}.{missing[0]}", "missing from the config")
    try:
        return cls(**{n: values[n] for n in names})
    except ConfigError as error:
        raise ConfigError(f"{prefix}.{error.key}", str(error).split(": ", 1)[1]) from error
