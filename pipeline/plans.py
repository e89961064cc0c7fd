"""cfg -> the typed settings each library stage takes (:mod:`glassworks.stages`).

Every entry point and ``pipeline.run`` reads a stage's config through the one function here, so
a key is read in one place. The settings are ``Validated`` dataclasses: :func:`pipeline.job.build_job`
builds them before the run exists, so a bad value fails there, named by its key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from glassworks.explain.types import Explainer
from glassworks.stages.settings import ExplainSettings, ReportSettings, RobustnessSettings, SweepReportSettings
from glassworks.validation import ConfigError, UserError
from pipeline.job import build

S = TypeVar("S")


def _settings(group: str, make: Callable[..., S], **values: Any) -> S:
    """A stage's settings, its errors named by the full key (``robustness.curve_k``)."""
    try:
        return make(**values)
    except ConfigError as error:
        raise UserError(f"invalid config {group}.{error.key}: {str(error).split(': ', 1)[1]}") from error


def explainers(explain_cfg: DictConfig, pad_id: int, names: Sequence[str]) -> Mapping[str, Explainer]:
    """The configured explainers among ``names`` (``explain.<method>`` nodes), built for the model's
    pad id (the baseline ``random_order`` has no node: it is the runner's own)."""
    return {m: build(explain_cfg[m], f"explain.{m}", pad_id=pad_id) for m in names
            if m in explain_cfg and m != "methods" and isinstance(explain_cfg[m], DictConfig)}


def explain_settings(cfg: DictConfig) -> ExplainSettings:
    ecfg = cfg.explain  # checked by build_job: known methods, valid budgets
    return _settings("explain", ExplainSettings, methods=list(ecfg.methods),
                     make_explainers=functools.partial(explainers, ecfg), n_examples=ecfg.n_examples,
                     n_heatmaps=ecfg.n_heatmaps, seed=ecfg.seed, config_yaml=OmegaConf.to_yaml(ecfg, resolve=True))


def robustness_settings(cfg: DictConfig) -> RobustnessSettings:
    rcfg = cfg.robustness
    return _settings("robustness", RobustnessSettings, curve_k=rcfg.curve_k,
                     attack=build(rcfg.attack, "robustness.attack"), n_stability=rcfg.n_stability, seed=rcfg.seed,
                     stability_examples=rcfg.stability_examples, max_html_examples=rcfg.max_html_examples,
                     make_explainers=functools.partial(explainers, cfg.explain))


def report_settings(cfg: DictConfig) -> ReportSettings:
    rcfg = cfg.report
    return _settings("report", ReportSettings, out_dir=str(rcfg.out_dir), log_to_run=bool(rcfg.log_to_run),
                     n_examples=rcfg.n_examples, top_tokens=rcfg.top_tokens,
                     confusion_matrix=bool(rcfg.confusion_matrix))


def sweep_report_settings(cfg: DictConfig) -> SweepReportSettings:
    rcfg = cfg.report
    return _settings("report", SweepReportSettings, out_dir=str(rcfg.out_dir), log_to_run=bool(rcfg.log_to_run),
                     max_children=rcfg.sweep.max_children, metric=str(rcfg.sweep.metric), mode=str(rcfg.sweep.mode),
                     accuracy_metric=rcfg.sweep.accuracy_metric, quality_metric=rcfg.sweep.quality_metric)
