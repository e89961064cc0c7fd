"""The library stages' settings: what each stage takes besides the run, as ``Validated``
dataclasses (the entry points build them from cfg before any run exists, see ``pipeline/plans.py``).

Light on purpose: an entry point imports these without importing the stages' machinery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, get_type_hints

from glassworks.explain.types import Explainer
from glassworks.tracking.objective import MODES
from glassworks.validation import ConfigError, Validated, check_type

T = TypeVar("T", bound=Validated)


@dataclass
class ExplainSettings(Validated):
    methods: list[str]
    # (pad id, method names) -> {method: explainer} for the configured ones among the names
    make_explainers: Callable[[int, Sequence[str]], Mapping[str, Explainer]]
    n_examples: int
    n_heatmaps: int
    seed: int
    config_yaml: str            # the explain config as run, logged as explanations/config.yaml

    def validate(self) -> None:
        _at_least(self, "n_examples", 1)
        _at_least(self, "n_heatmaps", 0, " (0: no heatmaps)")
        _at_least(self, "seed", 0)


@dataclass
class RobustnessSettings(Validated):
    curve_k: int
    attack: Any
    n_stability: int
    seed: int
    stability_examples: int | None
    max_html_examples: int
    # (pad id, method names) -> the explain stage's explainers among those names, configured as
    # there: stability re-runs them
    make_explainers: Callable[[int, Sequence[str]], Mapping[str, Explainer]]

    def validate(self) -> None:
        # The runner checks these too, but only after training: here they fail before the run.
        _at_least(self, "curve_k", 1)
        _at_least(self, "n_stability", 0, " (0: no stability)")
        _at_least(self, "stability_examples", 1, " or null (every example)")
        _at_least(self, "max_html_examples", 0)
        _at_least(self, "seed", 0)


@dataclass
class ReportSettings(Validated):
    out_dir: str
    log_to_run: bool = True
    n_examples: int = 3
    top_tokens: int = 5
    confusion_matrix: bool = True

    def validate(self) -> None:
        self.require(self.n_examples >= 0, "n_examples", f"must be >= 0, got {self.n_examples}")
        self.require(self.top_tokens >= 0, "top_tokens", f"must be >= 0, got {self.top_tokens}")


@dataclass
class SweepReportSettings(Validated):
    out_dir: str
    log_to_run: bool
    max_children: int
    metric: str                        # the objective when the parent names none
    mode: str
    accuracy_metric: str
    quality_metric: str

    def validate(self) -> None:
        self.require(self.mode in MODES, "sweep.mode", f"must be one of {list(MODES)}, got {self.mode!r}")


def _at_least(settings: Validated, key: str, low: int, note: str = "") -> None:
    """``key`` >= ``low``; None passes (an optional value, or a key :func:`check_settings` lacked)."""
    value = getattr(settings, key)
    settings.require(value is None or value >= low, key, f"must be >= {low}{note}, got {value}")


def check_settings(cls: type[T], values: Mapping[str, Any], prefix: str) -> None:
    """The same checks as building ``cls``, on the plain values a config group holds: a key the
    group lacks (the logged config of an older run; ``make_explainers``, ``attack``, built
    elsewhere) is not checked. A bad value raises ConfigError named ``<prefix>.<key>``, so a
    disabled stage's values fail in ``build_job`` too."""
    hints = get_type_hints(cls)
    settings = object.__new__(cls)
    try:
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            value = values[field.name] if field.name in values else None
            if field.name in values:
                check_type(field.name, value, hints.get(field.name, Any))
            object.__setattr__(settings, field.name, value)
        settings.validate()
    except ConfigError as error:
        raise ConfigError(f"{prefix}.{error.key}", str(error).split(": ", 1)[1]) from error
