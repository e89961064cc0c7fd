"""Derived runs on a real sqlite store, without training: the line from a derived run up to its
trained root, which run each stage's results come from, the settings logged as params, the
children a run lists, how a killed one is made again, and reproduce's table order."""

from __future__ import annotations

import io

import pytest
from mlflow import MlflowClient
from rich.console import Console

from glassworks.report.compare import compare_metrics
from glassworks.tracking import contract as C
from glassworks.tracking.derived import (consistent_holders, derived_line, derived_runs, derived_source,
                                         differing_settings, open_derived_run)
from glassworks.tracking.runs import rerun_command
from glassworks.tracking.store import ensure_experiment
from glassworks.tracking.tracker import MLflowTracker
from glassworks.validation import UserError
from pipeline.reproduce import print_comparison


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    """One store for the module (a new sqlite store costs seconds); each test trains its own root."""
    folder = tmp_path_factory.mktemp("derived") / "mlruns"
    tracker = MLflowTracker(store_dir=str(folder), system_metrics=False)
    return tracker, ensure_experiment(tracker.client, "glassworks", folder)


@pytest.fixture
def store(sqlite_store):
    tracker, experiment = sqlite_store
    client = tracker.client
    root = client.create_run(experiment, run_name="trained", tags={C.TAG_TASK: "run", C.TAG_DATA_DIGEST: "abc"})
    client.log_param(root.info.run_id, "explain.shap.algorithm", "partition")
    client.log_param(root.info.run_id, "explain.n_examples", "3")
    client.set_terminated(root.info.run_id)
    return tracker, client, root.info.run_id


def _derive(tracker, client, run_id, stage, settings, overrides=()):
    source = derived_source(tracker, run_id)
    child = open_derived_run(tracker, source, stage, settings, list(overrides), "task_name: x\n", ".")
    tracker.end("FINISHED")
    return client.get_run(child)


def test_a_child_holds_only_the_differing_settings_and_the_parent_is_untouched(store):
    tracker, client, root_id = store
    before = client.get_run(root_id)
    child = _derive(tracker, client, root_id, "explain",
                    {"explain": {"shap": {"algorithm": "exact"}, "n_examples": 3, "seed": 0}},
                    ["run_id=" + root_id, "explain.shap.algorithm=exact"])
    tags = child.data.tags
    assert tags[C.TAG_PARENT_RUN] == tags[C.TAG_DERIVED_FROM] == tags[C.TAG_DERIVED_ROOT] == root_id
    assert tags[C.TAG_DERIVED_STAGE] == "explain" and tags[C.TAG_DATA_DIGEST] == "abc"
    assert child.data.params == {"explain.shap.algorithm": "exact", "explain.seed": "0"}
    assert child.info.run_name == "trained-explain-1" and child.info.experiment_id == before.info.experiment_id
    assert "config/stage.yaml" in {a.path for a in client.list_artifacts(child.info.run_id, "config")}
    after = client.get_run(root_id)
    assert (after.data.params, after.data.tags, after.info.end_time) == (
        before.data.params, before.data.tags, before.info.end_time)
    again = _derive(tracker, client, root_id, "explain", {"explain": {"n_examples": 3}})
    assert again.info.run_name == "trained-explain-2" and again.data.params == {}
    assert rerun_command(child) == f"python -m pipeline.explain run_id={root_id} explain.shap.algorithm=exact"


def test_the_line_says_where_each_stages_results_come_from(store):
    tracker, client, root_id = store
    explained = _derive(tracker, client, root_id, "explain", {"explain": {"shap": {"algorithm": "exact"}}})
    probed = _derive(tracker, client, explained.info.run_id, "robustness", {"robustness": {"curve_k": 5}})
    probed_root = _derive(tracker, client, root_id, "robustness", {"robustness": {"curve_k": 5}})
    ex, pr, pr0 = explained.info.run_id, probed.info.run_id, probed_root.info.run_id

    line = derived_line(client, client.get_run(pr))
    assert [r.info.run_id for r in line.line] == [pr, ex] and line.root_id == root_id
    # effective settings: the root's, then each derived run's on the way down
    assert line.effective_params() == {"explain.shap.algorithm": "exact", "explain.n_examples": "3",
                                       "robustness.curve_k": "5"}
    assert consistent_holders(line) == {C.EXPLANATIONS_DIR: ex, C.ROBUSTNESS_DIR: pr}
    # a derived explain run does not stand for the root's robustness (made from other explanations)
    assert consistent_holders(derived_line(client, client.get_run(ex))) == {C.EXPLANATIONS_DIR: ex,
                                                                            C.ROBUSTNESS_DIR: None}
    assert consistent_holders(derived_line(client, client.get_run(pr0))) == {C.EXPLANATIONS_DIR: root_id,
                                                                             C.ROBUSTNESS_DIR: pr0}
    # the root lists every run of its line; a derived run its own children
    assert {r.info.run_id for r in derived_runs(client, client.get_run(root_id))} == {ex, pr, pr0}
    assert [r.info.run_id for r in derived_runs(client, client.get_run(ex))] == [pr]


def test_an_unfinished_derived_run_is_made_again_not_reused(store):
    tracker, client, root_id = store
    source = derived_source(tracker, root_id)
    child = open_derived_run(tracker, source, "explain", {"explain": {"n_examples": 4}},
                             [f"run_id={root_id}", "explain.n_examples=4"], "", ".")
    tracker.end("KILLED")
    with pytest.raises(UserError, match=f"run is KILLED, not FINISHED; it is a derived run, make it again with: "
                                        f"python -m pipeline.explain run_id={root_id} explain.n_examples=4"):
        derived_source(tracker, child)


def test_differing_settings_keep_what_the_parent_lacks():
    assert differing_settings({"robustness": {"curve_k": 5, "seed": 0}}, {"robustness.seed": "0"}) == {
        "robustness.curve_k": "5"}


def test_reproduce_table_lists_the_differing_rows_first():
    result = compare_metrics({"a": 1.0, "b": 2.0, "c": 3.0}, {"a": 1.0, "b": 2.5, "c": 3.0})
    run = type("Run", (), {"info": type("Info", (), {"run_id": "orig"})()})()

    def printed(show):
        buffer = io.StringIO()
        print_comparison(Console(file=buffer, width=200), result, run, run, 0.0, 1e-6, show)
        return [line for line in buffer.getvalue().splitlines() if line.startswith("│")]

    rows = printed("all")
    assert [r.split()[1] for r in rows] == ["b", "a", "c"] and "DIFFERS" in rows[0]
    assert [r.split()[1] for r in printed("differing")] == ["b"]
