"""One pick_best: the sweep's parent run and the sweep report choose the same child."""

from __future__ import annotations

import math

import pytest

from glassworks.report.sweep_report import Child, SweepObjective, best_child
from glassworks.tracking.objective import objective_value, pick_best


def test_pick_best_by_mode_skips_unfinished_and_non_finite():
    candidates = [("a", "FINISHED", 0.5), ("b", "FAILED", 0.99), ("c", "FINISHED", math.nan),
                  ("d", "FINISHED", 0.7), ("e", "FINISHED", None), ("f", "FINISHED", 0.2)]
    assert pick_best(candidates, "max") == "d"
    assert pick_best(candidates, "min") == "f"
    assert pick_best([("a", "FAILED", 1.0)], "max") is None
    assert pick_best([], "min") is None


def test_pick_best_keeps_the_first_on_ties():
    assert pick_best([(0, "FINISHED", 1.0), (1, "FINISHED", 1.0)], "max") == 0
    assert pick_best([(0, "FINISHED", 1.0), (1, "FINISHED", 1.0)], "min") == 0


def test_pick_best_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        pick_best([], "best")


def test_sweep_report_picks_through_pick_best():
    children = [Child(str(i), f"c{i}", status, {}, {"val/acc": v} if v is not None else {}, {})
                for i, (status, v) in enumerate([("FINISHED", 0.4), ("FINISHED", 0.9), ("KILLED", 1.0),
                                                  ("FINISHED", None)])]
    assert best_child(children, SweepObjective("val/acc", "max")) == 1
    assert best_child(children, SweepObjective("val/acc", "min")) == 0


def test_objective_value_finds_the_mlflow_name():
    assert objective_value("robustness/shap/flip_rate@5", {"robustness/shap/flip_rate_at_5": 0.25}) == 0.25
    assert objective_value("val/acc", {"val/loss": 1.0}) is None


def test_a_missing_objective_names_the_closest_metrics_and_an_absent_namespace(caplog):
    logged = {"test/acc": 0.9, "test/f1": 0.9, "train/acc": 0.8, "explain/agreement/flow_vs_shap": 0.5,
              "explain/shap/comprehensiveness": 0.6}
    with caplog.at_level("WARNING", logger="glassworks.sweep"):
        assert objective_value("val/acc", logged) is None  # validation never ran (max_epochs=0)
        assert objective_value("explain/shap/comprehensivness", logged) is None
        assert objective_value("val/acc", logged, warn=False) is None
    first, second = (r.getMessage() for r in caplog.records)
    assert first == ("optimized_metric=val/acc is not among this run's 5 metrics; none under val/ was logged; "
                     "closest: train/acc, test/acc")
    assert second.endswith("5 metrics; closest: explain/shap/comprehensiveness")
