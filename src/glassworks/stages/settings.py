"""The library stages' settings: what each stage takes besides the run, as ``Validated``
dataclasses (the entry points build them from cfg before any run exists, see ``pipeline/plans.py``).

Light on purpose: an entry point imports these without importing the stages' machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from glassworks.explain.types import Explainer
from glassworks.tracking.objective import MODES
from glassworks.validation import Validated


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
        self.require(self.n_examples >= 1, "n_examples", f"must be >= 1, got {self.n_examples}")
        self.require(self.n_heatmaps >= 0, "n_heatmaps", f"must be >= 0 (0: none), got {self.n_heatmaps}")
        self.require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")


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
        self.require(self.curve_k >= 1, "curve_k", f"must be >= 1, got {self.curve_k}")
        self.require(self.n_stability >= 0, "n_stability", f"must be >= 0 (0 disables stability), got {self.n_stability}")
        self.require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        self.require(self.stability_examples is None or self.stability_examples >= 1, "stability_examples",
                     f"must be >= 1 or null, got {self.stability_examples}")
        self.require(self.max_html_examples >= 0, "max_html_examples", f"must be >= 0, got {self.max_html_examples}")


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
