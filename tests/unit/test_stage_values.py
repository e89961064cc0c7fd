"""The explain and robustness groups' own values, checked before any run (build_job)."""

from __future__ import annotations

import pytest

from glassworks.stages.settings import ExplainSettings, RobustnessSettings, check_settings
from glassworks.validation import ConfigError


def test_defaults_and_older_configs_pass():
    check_settings(ExplainSettings, {"methods": ["shap"], "n_examples": 40, "seed": 0, "n_heatmaps": 3}, "explain")
    check_settings(RobustnessSettings, {"curve_k": 10, "stability_examples": None}, "robustness")
    check_settings(ExplainSettings, {"n_examples": 5}, "explain")  # a run logged before n_heatmaps existed


@pytest.mark.parametrize(("cls", "values", "message"), [
    (ExplainSettings, {"n_examples": 0}, "explain.n_examples: must be >= 1, got 0"),
    (ExplainSettings, {"n_heatmaps": -1}, "explain.n_heatmaps: must be >= 0 (0: no heatmaps), got -1"),
    (ExplainSettings, {"n_examples": "ten"}, "explain.n_examples: expected"),
    (RobustnessSettings, {"stability_examples": 0}, "robustness.stability_examples: must be >= 1 or null"),
    (RobustnessSettings, {"curve_k": 0}, "robustness.curve_k: must be >= 1, got 0"),
])
def test_bad_values_name_the_key(cls, values, message):
    with pytest.raises(ConfigError) as error:
        check_settings(cls, values, cls.__name__.removesuffix("Settings").lower())
    assert str(error.value).startswith(message)
