"""Sweeps end to end through the real CLI (``-m`` needs ``@hydra.main``): one parent MLflow run
per sweep with a nested child per job, a summary, the best model registered; parallel joblib
jobs on one sqlite store; failed jobs; DDP inside a sweep; an Optuna search against a real
``mlflow server``. Few invocations, each checking much, to keep the file fast on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from mlflow import MlflowClient
from omegaconf import OmegaConf

from glassworks.report.collect import ArtifactReader
from glassworks.testing import MEANING_TEXTS, assert_columns_follow_label_order
from glassworks.tracking import contract as C
from glassworks.tracking.logged_model import run_model_id
from glassworks.tracking.pyfunc import load_run_model
from glassworks.tracking.sweep import child_run_name
from pipeline.sweep_callback import swept
from tests.conftest import ROOT, TINY, compose_config, mlflow_server, run_cli

FAST = [*TINY, "trainer.max_epochs=1", "data.source.n_train=200", "explain.n_examples=4",
        "explain.methods=[rollout,input_x_gradient]", "explain.n_heatmaps=0",
        "robustness.enabled=false", "report.enabled=false"]
TEXTS = pd.DataFrame({"text": ["a truly great film", "a dull and awful plot"]})


def assert_registered_model_is_the_runs(run_id: str, tracking_uri: str) -> None:
    """models:/glassworks-best/latest (through the current tracking URI) answers with the best run's
    probabilities, column by column in label order. (One epoch on 200 examples: too little training
    to also require positive > negative, which tests/unit/test_pyfunc_meaning.py checks.)"""
    texts = [*TEXTS["text"], *MEANING_TEXTS]
    predictions = mlflow.pyfunc.load_model("models:/glassworks-best/latest").predict(pd.DataFrame({"text": texts}))
    reference = load_run_model(run_id, tracking_uri).predict_proba(texts)
    assert_columns_follow_label_order(predictions, reference, ["negative", "positive"])


def sweep(cwd: Path, *overrides: str, multirun: bool = True,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    out = run_cli("pipeline.run", *(["-m"] if multirun else []), *FAST, *overrides, cwd=cwd, env=env)
    assert "database is locked" not in out.stderr
    return out


def sqlite_client(cwd: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")


def all_runs(client: MlflowClient) -> list:
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def family(client: MlflowClient) -> dict[str, list]:
    """{parent run id: [its children]} over the whole store."""
    runs = all_runs(client)
    parents = {r.info.run_id: [] for r in runs if r.data.tags.get("glassworks.sweep_role") == "parent"}
    for run in runs:
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent:
            assert parent in parents, f"child {run.info.run_name} points at an unknown parent"
            assert run.data.tags["glassworks.sweep_id"] == parent
            parents[parent].append(run)
    return parents


def artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    files = set()
    for item in client.list_artifacts(run_id, path):
        files |= artifact_files(client, run_id, item.path) if item.is_dir else {item.path}
    return files


def summary_csv(client: MlflowClient, run_id: str, tmp: Path) -> pd.DataFrame:
    return pd.read_csv(client.download_artifacts(run_id, "sweep/summary.csv", str(tmp)))


# -- fast checks of the pieces ---------------------------------------------------------------


def test_child_run_names_are_readable_unique_and_short():
    name = child_run_name("run-sweep-0101-120000", 3,
                          ["data.batch_size=32", "model.n_layers=2", "optimizer.lr=0.000587194737873281",
                           "+tags.note=a b/c"], ["model.n_layers", "optimizer.lr", "tags.note"])
    assert name == "run-sweep-0101-120000-3-model.n_layers=2,optimizer.lr=0.0005872,tags.note=a_b_c"
    assert len(child_run_name("s", 0, ["x=" + "a" * 500], ["x"])) == 120


def test_swept_keys_from_command_line_and_search_space():
    assert swept(["model.n_layers=1,2", "seed=0", "explain.methods=[a],[b]", "x=choice(1,2)", "x=3"],
                 None) == {"model.n_layers": "1,2", "explain.methods": "[a],[b]"}
    space = OmegaConf.create({"optimizer.lr": "tag(log, interval(0.001, 0.1))", "fixed": "3"})
    assert swept([], space) == {"optimizer.lr": "tag(log, interval(0.001, 0.1))"}


def test_sweep_configs_compose(tmp_path):
    cfg = compose_config(tmp_path, ["hparams_search=optuna", "optimized_metric_mode=min"],
                         config_name="run")
    assert cfg.optimized_metric == "val/acc" and cfg.sweep.register_model_as == "glassworks-best"
    hydra = HydraConfig.get()
    assert hydra.sweeper.direction == "minimize" and hydra.sweeper.n_trials > 3
    assert "optimizer.lr" in hydra.sweeper.params and hydra.mode.name == "MULTIRUN"
    assert "mlflow_sweep" in hydra.callbacks
    compose_config(tmp_path, ["hydra/launcher=submitit_slurm"], config_name="run")
    launcher = HydraConfig.get().launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.timeout_min > 0
    assert launcher.max_num_timeout > 0  # a job past its time limit is requeued, and continues its run


def test_submitit_slurm_config_starts_without_hydras_deprecation_warning(tmp_path):
    # conf/hydra/launcher/submitit_slurm.yaml extends the plugin's config of the same name: Hydra
    # printed that this is deprecated at the start of every sweep and every job.
    result = run_cli("pipeline.train", "hydra/launcher=submitit_slurm", "--cfg", "hydra", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "max_num_timeout: 3" in result.stdout and "ConfigStore schema" not in result.stderr


# -- the real CLI --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A 2x2 grid in 2 parallel joblib processes on a fresh sqlite store, best = lowest val/loss."""
    cwd = tmp_path_factory.mktemp("grid")
    start = time.perf_counter()
    out = sweep(cwd, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.n_layers=1,2", "seed=0,1",
                "optimized_metric=val/loss", "optimized_metric_mode=min")
    return {"cwd": cwd, "out": out, "seconds": time.perf_counter() - start}


@pytest.mark.slow
def test_grid_sweep_one_parent_four_children_in_parallel(grid, tmp_path):
    out, client = grid["out"], sqlite_client(grid["cwd"])
    assert out.returncode == 0, out.stderr[-4000:]
    parents = family(client)
    assert len(parents) == 1
    (parent_id, children), = parents.items()
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)

    names = sorted(c.info.run_name for c in children)
    assert len(set(names)) == 4
    assert all(n.startswith(f"{parent.info.run_name}-") for n in names)
    assert names[0].endswith("-0-model.n_layers=1,seed=0") and names[3].endswith("-3-model.n_layers=2,seed=1")
    combos = {(c.data.params["model.n_layers"], c.data.params["seed"]) for c in children}
    assert combos == {("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")}
    for child in children:  # each child is a full pipeline.run: trained and explained
        metrics = child.data.metrics
        assert {"test/acc", "val/loss", "explain/rollout/comprehensiveness",
                "explain/input_x_gradient/rationale_auprc"} <= set(metrics)
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"explanations", "config"} <= artifacts and run_model_id(client, child.info.run_id)
    # joblib really ran them side by side
    spans = sorted((c.info.start_time, c.info.end_time) for c in children)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans

    # the parent: sweep-level config and overrides, counts, best child, table, plots
    assert parent.data.tags["glassworks.sweep.launcher"] == "joblib"
    assert "model.n_layers=1,2" in parent.data.tags["glassworks.sweep.overrides"]
    assert parent.data.params["model.n_layers"] == "sweep: 1,2"
    assert parent.data.params["data.source.n_train"] == "200"
    assert parent.data.metrics["sweep/n_jobs"] == 4 and parent.data.metrics["sweep/n_failed"] == 0
    best = min(children, key=lambda c: c.data.metrics["val/loss"])
    assert parent.data.tags["glassworks.sweep.best_run_id"] == best.info.run_id
    assert parent.data.metrics["best/val/loss"] == pytest.approx(best.data.metrics["val/loss"])
    files = artifact_files(client, parent_id)
    assert {"config/config.yaml", "config/overrides.txt", "sweep/summary.csv", "sweep/summary.json",
            "sweep/plots/model.n_layers_vs_val_loss.png", "sweep/plots/seed_vs_val_loss.png",
            "sweep/plots/accuracy_vs_faithfulness.png"} <= files
    table = summary_csv(client, parent_id, tmp_path)
    assert len(table) == 4 and set(table["status"]) == {"FINISHED"}
    assert set(table["run_id"]) == {c.info.run_id for c in children}
    assert {"model.n_layers", "seed", "test/acc", "explain/rollout/comprehensiveness",
            "explain/input_x_gradient/rationale_auprc"} <= set(table.columns)
    mlflow.set_tracking_uri(client.tracking_uri)  # load_table searches through the fluent API
    logged = client.load_table(parent.info.experiment_id, "sweep/summary.json", run_ids=[parent_id])
    assert len(logged) == 4

    # the winner is in the registry: models:/glassworks-best/latest
    assert parent.data.tags["glassworks.sweep.registered_model"] == "glassworks-best/1"
    # ... and the sweep's last lines say so, next to the parent run's link
    tail = "\n".join(grid["out"].stdout.strip().splitlines()[-6:])
    assert "registered model: models:/glassworks-best/1 (models:/glassworks-best/latest)" in tail
    assert f"parent run {parent_id}: http://127.0.0.1:5000/" in tail
    # the sweep wrote its own report (report.enabled=false only turns off the children's), logged
    # to the parent before it ended, and names the status the parent ended with
    (folder,) = (grid["cwd"] / "reports").glob(f"{parent.info.run_name}-{parent_id[:8]}")
    assert f"report: {folder / 'report.html'}" in tail
    assert {"report/report.html", "report/report.md", "report/report.json"} <= files
    assert "- **status**: FINISHED" in (folder / "report.md").read_text()
    assert json.loads((folder / "report.json").read_text())["best_run_id"] == best.info.run_id
    versions = client.search_model_versions("name='glassworks-best'")
    assert [v.run_id for v in versions] == [best.info.run_id]
    # the version is the best child's LoggedModel, which lists it (what the UI links them by)
    model = client.get_logged_model(run_model_id(client, best.info.run_id))
    assert versions[0].source == model.artifact_location
    assert json.loads(model.tags[C.TAG_LOGGED_MODEL_VERSIONS]) == [{"name": "glassworks-best", "version": "1"}]
    assert_registered_model_is_the_runs(best.info.run_id, client.tracking_uri)


@pytest.mark.slow
def test_run_commands_given_a_sweeps_parent_say_what_to_give_instead(grid):
    cwd, client = grid["cwd"], sqlite_client(grid["cwd"])
    ((parent_id, children),) = [(k, v) for k, v in family(client).items()
                                if client.get_run(k).data.tags["glassworks.sweep.launcher"] == "joblib"]
    best = client.get_run(parent_id).data.tags["glassworks.sweep.best_run_id"]
    before = len(all_runs(client))
    for command in ("pipeline.explain", "pipeline.robustness", "pipeline.reproduce"):
        out = run_cli(command, f"run_id={parent_id[:8]}", cwd=cwd)
        assert out.returncode == 2, (command, out.stderr[-2000:])
        assert (f"the parent run of sweep {client.get_run(parent_id).info.run_name}, which trains nothing itself; "
                f"give one of its children (the best: run_id={best[:8]}); python -m pipeline.report "
                f"sweep_id={parent_id[:8]} lists them all") in out.stderr, (command, out.stderr[-2000:])
    assert len(all_runs(client)) == before  # refused before any run was made
    # run_id= of a sweep's parent is its sweep report; sweep_id= of a child is refused
    out = run_cli("pipeline.report", f"run_id={parent_id[:8]}", cwd=cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "its report is the sweep report" in out.stdout + out.stderr
    assert f"{parent_id[:8]}/report.html" in out.stdout
    child = children[0].info.run_id
    out = run_cli("pipeline.report", f"sweep_id={child[:8]}", cwd=cwd)
    assert out.returncode == 2 and (f"sweep_id={child}: run {child[:8]} is a pipeline.run run, not a sweep's parent; "
                                    f"its report: python -m pipeline.report run_id={child[:8]}") in out.stderr


@pytest.mark.slow
def test_failed_jobs_and_ddp_in_a_sweep_rerun_makes_a_new_parent(grid, tmp_path):
    """Same store as the grid: a second sweep gets its own parent and never touches the first.
    Jobs: n_heads=3 fails validation (no run), job 3 (trainer=cpu) fails inside its run (an
    injected error in its training step; until 2026-12-03 trainer=gpu on a machine without one
    did, which now fails validation), and the one good job trains with DDP in 2 processes."""
    cwd, client = grid["cwd"], sqlite_client(grid["cwd"])
    before = family(client)
    out = sweep(cwd, "trainer=ddp_cpu,cpu", "model.n_heads=3,4", "sweep.register_model_as=null",
                env={"PYTHONPATH": str(ROOT / "tests" / "faults"), "GLASSWORKS_FAULT": "raise:train:3"})
    assert out.returncode != 0
    assert "error: invalid config model" in out.stderr and "n_heads (3)" in out.stderr
    assert "Traceback" not in out.stderr

    parents = family(client)
    assert len(parents) == 2
    assert {k: len(v) for k, v in before.items()} == {k: len(parents[k]) for k in before}
    (parent_id, children), = ((k, v) for k, v in parents.items() if k not in before)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["sweep/n_jobs"] == 4 and parent.data.metrics["sweep/n_failed"] == 3
    assert parent.data.tags["glassworks.sweep.n_failed"] == "3"
    assert parent.data.tags["glassworks.sweep.failures"].count("n_heads (3)") == 2
    assert "glassworks.sweep.registered_model" not in parent.data.tags

    # n_heads=4: two runs; the DDP one finished, the other FAILED with its error
    assert len(children) == 2
    by_status = {c.info.status: c for c in children}
    assert set(by_status) == {"FINISHED", "FAILED"}
    good, bad = by_status["FINISHED"], by_status["FAILED"]
    assert good.data.params["trainer.devices"] == "2"
    assert good.data.params["trainer.strategy._target_"] == "glassworks.training.distributed.ddp_strategy"
    assert {"val/acc", "test/acc", "explain/rollout/comprehensiveness"} <= set(good.data.metrics)
    assert "injected failure in the train stage" in bad.data.tags["glassworks.error"]
    assert parent.data.tags["glassworks.sweep.best_run_id"] == good.info.run_id

    table = summary_csv(client, parent_id, tmp_path)
    assert len(table) == 4
    assert sorted(table["status"]) == ["FAILED", "FAILED", "FAILED", "FINISHED"]
    no_run = table[table["run_id"].isna()]
    assert len(no_run) == 2 and no_run["error"].str.contains("n_heads").all()
    # the parent is not resumed: its unfinished job is, as a run of its own
    out_resume = run_cli("pipeline.run", f"resume={parent_id[:8]}", cwd=cwd)
    assert out_resume.returncode == 2 and (
        f"is the parent run of sweep {parent.info.run_name} (FAILED); a sweep is not resumed, its jobs are: "
        f"python -m pipeline.run resume={bad.info.run_id[:8]}; or run the sweep again: python -m pipeline.run ") \
        in out_resume.stderr, out_resume.stderr[-2000:]
    (folder,) = (cwd / "reports").glob(f"*-{parent_id[:8]}")  # the report of a failed sweep too
    assert "- **status**: FAILED" in (folder / "report.md").read_text()
    assert f"report: {folder / 'report.html'}" in out.stderr


@pytest.fixture
def mlflow_server_url(tmp_path):
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path, tmp_path / "server.log",
                       "--artifacts-destination", str(tmp_path / "art")) as url:
        yield url


@pytest.mark.slow
def test_optuna_search_through_an_mlflow_server(mlflow_server_url, tmp_path):
    """hparams_search=optuna (no -m: the config makes it a multirun), every write over HTTP."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    out = sweep(cwd, "hparams_search=optuna", "hydra.sweeper.n_trials=3", "report.sweep.enabled=false",
                f"logger.tracking_uri={mlflow_server_url}", multirun=False)
    assert out.returncode == 0, out.stderr[-4000:]
    assert not (cwd / "mlruns" / "mlflow.db").exists(), "everything goes to the server"

    client = MlflowClient(mlflow_server_url)
    parents = family(client)
    assert len(parents) == 1
    (parent_id, trials), = parents.items()
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["glassworks.sweep.sweeper"] == "optuna"
    assert len(trials) == 3 and all(t.info.status == "FINISHED" for t in trials)
    assert len({t.data.params["optimizer.lr"] for t in trials}) == 3, "Optuna sampled each trial"
    assert parent.data.params["optimizer.lr"].startswith("sweep: tag(log, interval(")

    # the value main() returned to Optuna is the one the parent ranks by
    study = yaml.safe_load(open(client.download_artifacts(parent_id, "sweep/optimization_results.yaml",
                                                          str(tmp_path))))
    best = max(trials, key=lambda t: t.data.metrics["val/acc"])
    assert study["best_value"] == pytest.approx(best.data.metrics["val/acc"])
    assert parent.data.metrics["best/val/acc"] == pytest.approx(study["best_value"])
    assert parent.data.tags["glassworks.sweep.best_run_id"] in {
        t.info.run_id for t in trials if t.data.metrics["val/acc"] == best.data.metrics["val/acc"]}

    # everything reads back through the server: metrics, artifact listings, the registered model
    for trial in trials:
        assert client.get_metric_history(trial.info.run_id, "train/loss")
        assert "explanations" in {a.path for a in client.list_artifacts(trial.info.run_id)}
        assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(run_model_id(client, trial.info.run_id))}
    assert "sweep/summary.csv" in artifact_files(client, parent_id)
    assert not client.list_artifacts(parent_id, "report") and not (cwd / "reports").exists()  # report.sweep.enabled=false
    assert "report: " not in out.stdout
    assert len(summary_csv(client, parent_id, tmp_path)) == 3
    mlflow.set_tracking_uri(mlflow_server_url)
    assert_registered_model_is_the_runs(parent.data.tags["glassworks.sweep.best_run_id"], mlflow_server_url)

    # a report's reader downloads what the server proxies (mlflow-artifacts:) into its own folder
    trial_id = trials[0].info.run_id
    assert client.get_run(trial_id).info.artifact_uri.startswith("mlflow-artifacts:")
    reader = ArtifactReader(client, trial_id)
    name = next(a.path for a in client.list_artifacts(trial_id, "explanations") if not a.is_dir)
    path = reader.local(name)
    assert reader.exists("explanations") and not reader.exists("explanations/nothing.txt")
    served = [p for p in (tmp_path / "art").rglob(Path(name).name) if trial_id in p.parts]
    assert len(served) == 1 and path.read_bytes() == served[0].read_bytes()
    assert not path.is_relative_to(tmp_path / "art")
    reader.close()
    assert not path.exists()
