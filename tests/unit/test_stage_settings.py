"""Stage settings are Validated dataclasses built by build_job: a bad explain/robustness/report
value fails before any run exists, named by its full key (not after training, as a traceback)."""

from __future__ import annotations

import pytest

from glassworks.stages.robustness import RobustnessSettings
from glassworks.validation import ConfigError, UserError
from pipeline.job import build_job
from pipeline.plans import explain_settings, report_settings, robustness_settings
from tests.conftest import compose_config


@pytest.mark.parametrize(("override", "message"), [
    ("robustness.curve_k=0", "invalid config robustness.curve_k: must be >= 1, got 0"),
    ("robustness.n_stability=-1", "invalid config robustness.n_stability: must be >= 0"),
    ("robustness.stability_examples=0", "invalid config robustness.stability_examples: must be >= 1 or null"),
    ("explain.n_examples=0", "invalid config explain.n_examples: must be >= 1, got 0"),
    ("explain.n_heatmaps=-2", "invalid config explain.n_heatmaps: must be >= 0"),
    ("report.top_tokens=-1", "invalid config report.top_tokens: must be >= 0, got -1"),
    ("robustness.curve_k=ten", "invalid config robustness.curve_k: expected int, got 'ten'"),
])
def test_bad_stage_value_fails_in_build_job_naming_the_key(tmp_path, override, message):
    cfg = compose_config(tmp_path, ["logger=none", override], config_name="run")
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        build_job(cfg, with_data=False)


def test_default_settings_are_valid_and_typed(tmp_path):
    cfg = compose_config(tmp_path, ["logger=none"], config_name="run")
    explain, robust, report = explain_settings(cfg), robustness_settings(cfg), report_settings(cfg)
    assert explain.methods == list(cfg.explain.methods) and explain.n_examples == cfg.explain.n_examples
    assert set(explain.make_explainers(0, ["shap", "rollout", "random_order"])) == {"shap", "rollout"}
    assert robust.curve_k == cfg.robustness.curve_k and robust.attack is not None
    assert report.out_dir == str(cfg.report.out_dir)


def test_settings_validate_without_hydra():
    with pytest.raises(ConfigError, match="curve_k"):
        RobustnessSettings(curve_k=0, attack=None, n_stability=1, seed=0, stability_examples=None,
                           max_html_examples=10, make_explainers=lambda pad, names: {})
