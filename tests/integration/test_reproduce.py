"""pipeline.reproduce on a real tiny CPU run, as a user runs it: same code and seed give the very
same metrics (train, explain with SHAP, robustness); a changed metric or config is caught."""

from __future__ import annotations


import pytest
from mlflow import MlflowClient

import pipeline.explain
import pipeline.reproduce
from glassworks.report.compare import excluded
from glassworks.tracking.contract import MACHINE_METRICS
from tests.conftest import TINY, run_cli
from tests.conftest import compose_config, run_snapshot

pytestmark = pytest.mark.slow

# No attention heatmaps (over a second each to draw, nothing here looks at them; the re-explain below says so too).
OVERRIDES = [*TINY, "explain.n_examples=3", "explain.methods=[shap,rollout]", "explain.shap.max_evals=32",
             "explain.n_heatmaps=0",
             "robustness.stability_examples=1", "robustness.n_stability=1", "robustness.attack.max_edits=2",
             "report.enabled=false"]
# Params that name places, not choices: they differ between a run and its reproduction by design.
LOCATIONS = ("paths.", "tags", "run_name", "trainer.default_root_dir", "callbacks.model_checkpoint.dirpath",
             "callbacks.resume_checkpoint.dirpath",
             "logger.store_dir", "logger.tracking_uri", "report.out_dir")



@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reproduce")
    original = run_cli("pipeline.run", *OVERRIDES, cwd=tmp)
    assert original.returncode == 0, original.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    (run,) = client.search_runs(experiments)
    out = run_cli("pipeline.reproduce", f"run_id={run.info.run_id}", cwd=tmp)
    runs = client.search_runs(experiments, filter_string=f"tags.`glassworks.reproduces` = '{run.info.run_id}'")
    return {"tmp": tmp, "client": client, "original": run, "out": out, "runs": runs, "experiments": experiments}


def test_same_code_and_seed_reproduce_every_metric_exactly(reproduced):
    out, original = reproduced["out"], reproduced["original"]
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-3000:]
    assert "reproduced: all" in out.stdout
    (new,) = reproduced["runs"]
    assert new.info.status == "FINISHED" and new.info.run_id != original.info.run_id
    before = {k: v for k, v in original.data.metrics.items() if not excluded(k, MACHINE_METRICS)}
    after = {k: v for k, v in new.data.metrics.items() if not excluded(k, MACHINE_METRICS)}
    assert before == after  # bit for bit, not within a tolerance
    for stage in ("test/acc", "explain/shap/comprehensiveness", "explain/rollout/rationale_auprc",
                  "robustness/shap/deletion_auc", "robustness/shap/stability", "explain/agreement/rollout_vs_shap"):
        assert stage in before, stage
    assert new.data.tags["glassworks.data.digest"] == original.data.tags["glassworks.data.digest"]
    settings = {k: v for k, v in new.data.params.items() if not k.startswith(LOCATIONS)}
    assert settings == {k: v for k, v in original.data.params.items() if not k.startswith(LOCATIONS)}
    # The table names what was left out and why.
    assert "not compared" in out.stdout and "time/train_s" in out.stdout and "train/tokens_per_sec" in out.stdout


# Before test_a_changed_metric_fails, which rewrites the original on purpose.
def test_readme_re_explain_makes_a_child_run_and_leaves_the_original_as_recorded(reproduced, capsys):
    client, original = reproduced["client"], reproduced["original"]
    run_id = original.info.run_id
    (new,) = reproduced["runs"]
    before = run_snapshot(client, run_id)
    # The README's example, at this file's size (the same methods and budget as the original).
    out = run_cli("pipeline.explain", f"run_id={run_id}", "explain.shap.algorithm=exact", "explain.n_examples=3",
                  "explain.methods=[shap,rollout]", "explain.shap.max_evals=32", "explain.n_heatmaps=0",
                  "logger.system_metrics=false", cwd=reproduced["tmp"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert before == run_snapshot(client, run_id)  # not a param, metric point, tag, artifact or time changed
    (child,) = client.search_runs(reproduced["experiments"], filter_string=f"tags.`glassworks.derived_from` = '{run_id}'")
    tags = child.data.tags
    assert child.info.status == "FINISHED" and child.info.experiment_id == original.info.experiment_id
    assert tags["mlflow.parentRunId"] == run_id and tags["glassworks.derived_root"] == run_id
    assert tags["glassworks.derived_stage"] == "explain" and child.info.run_id in out.stdout
    # its params: exactly the settings that differ from the original's
    assert child.data.params == {"explain.shap.algorithm": "exact"}
    assert original.data.params["explain.shap.algorithm"] == "partition"
    metrics = child.data.metrics
    assert "explain/shap/comprehensiveness" in metrics and "explain/rollout/comprehensiveness" in metrics
    assert "time/explain_s" in metrics and not any(k.startswith(("train/", "test/", "robustness/")) for k in metrics)
    explain_config = client.download_artifacts(child.info.run_id, "explanations/config.yaml", str(reproduced["tmp"]))
    assert "algorithm: exact" in open(explain_config, encoding="utf-8").read()
    assert ("explanations/attributions.parquet" in
            {a.path for a in client.list_artifacts(child.info.run_id, "explanations")})
    # The original still reproduces: its recorded metrics are what its reproduction measured.
    cfg = compose_config(reproduced["tmp"], [f"run_id={run_id}", f"reproduce.against={new.info.run_id}"],
                         config_name="reproduce", tiny=False)
    pipeline.reproduce.main(cfg)  # returns (exit 0) when every metric agrees
    printed = capsys.readouterr().out
    assert "reproduced: all" in printed and "1 derived run" in printed
    # Twice -> two children; the original is still as recorded.
    pipeline.explain.main(compose_config(reproduced["tmp"], [f"run_id={run_id}", "explain.n_examples=3",
                                                             "explain.methods=[rollout]", "explain.n_heatmaps=0",
                                                             "logger.system_metrics=false"],
                                         config_name="explain", tiny=False))
    children = client.search_runs(reproduced["experiments"], filter_string=f"tags.`glassworks.derived_from` = '{run_id}'")
    assert len(children) == 2 and before == run_snapshot(client, run_id)


def test_a_changed_metric_fails(reproduced, capsys):
    client, original = reproduced["client"], reproduced["original"]
    (new,) = reproduced["runs"]
    client.log_metric(original.info.run_id, "test/acc", original.data.metrics["test/acc"] + 0.25, step=1)
    # Comparing with the existing reproduction re-runs nothing: in-process is as good as the CLI.
    cfg = compose_config(reproduced["tmp"], [f"run_id={original.info.run_id}", f"reproduce.against={new.info.run_id}"],
                         config_name="reproduce", tiny=False)
    with pytest.raises(SystemExit) as exit_info:
        pipeline.reproduce.main(cfg)
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "NOT reproduced: 1 of" in out
    (line,) = [ln for ln in out.splitlines() if "test/acc" in ln]
    assert "DIFFERS" in line


def test_a_changed_config_fails(reproduced):
    (base,) = reproduced["runs"]
    out = run_cli("pipeline.reproduce", f"run_id={base.info.run_id}",
                  'reproduce.overrides=["optimizer.lr=0.02","explain.methods=[]"]', cwd=reproduced["tmp"])
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "applying overrides" in out.stdout + out.stderr
    (line,) = [ln for ln in out.stdout.splitlines() if " train/loss " in ln]
    assert "DIFFERS" in line
    client = reproduced["client"]
    (changed,) = client.search_runs(reproduced["experiments"],
                                    filter_string=f"tags.`glassworks.reproduces` = '{base.info.run_id}'")
    assert changed.data.params["optimizer.lr"] == "0.02"


def test_an_unknown_run_is_a_clear_error(tmp_path, capsys):
    cfg = compose_config(tmp_path, ["run_id=0123456789abcdef"], config_name="reproduce", tiny=False)
    with pytest.raises(SystemExit) as exit_info:
        pipeline.reproduce.main(cfg)
    assert exit_info.value.code == 2
    assert "run_id=0123456789abcdef: no such run" in capsys.readouterr().err
