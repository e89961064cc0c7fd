"""task=lm end to end: ``python -m pipeline.run experiment=lm_recall`` at a small size trains,
explains every generated token, probes and reports a causal LM inside ONE MLflow run; bad
task/explain pairs and prompts longer than the model's context fail before any run exists."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from glassworks.models.generation import generate
from glassworks.tasks.lm import LMTask
from glassworks.tracking import contract as C
from glassworks.tracking.pyfunc_lm import WEIGHTS_FILE, load_lm_dir
from glassworks.tracking.logged_model import download_run_model
from pipeline.stage import UserError, build_job
from tests.conftest import compose_config, run_cli

pytestmark = pytest.mark.slow

SMALL = ["data.source.n_train=1500", "data.source.n_validation=60", "data.source.n_test=60", "data.batch_size=32",
         "trainer.max_epochs=1", "trainer=cpu", "callbacks.rich_progress_bar=null", "logger.system_metrics=false",
         "explain.n_examples=4", "explain.n_heatmaps=1", "explain.shap.max_evals=64", "robustness.curve_k=4"]


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    done = run_cli("pipeline.run", "experiment=lm_recall", *SMALL, cwd=tmp, env={
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    assert done.returncode == 0, done.stderr[-3000:]
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return {"tmp": tmp, "client": client, "run": runs[0], "uri": uri}


def test_one_finished_run_with_the_lm_metrics(lm_run):
    run = lm_run["run"]
    metrics = run.data.metrics
    assert run.info.status == "FINISHED"
    for key in ("train/loss", "val/loss", "val/perplexity", "test/answer_acc", "explain/shap/hit_at_1",
                "explain/random_order/hit_at_1", "explain/rollout/mrr", "explain/shap/auprc",
                "explain/shap/comprehensiveness", "explain/shap/sufficiency", "robustness/shap/deletion_auc",
                "robustness/shap/deletion_auc_ratio"):
        assert key in metrics, key
    assert 0.0 <= metrics["test/answer_acc"] <= 1.0
    assert metrics["val/perplexity"] > 1.0
    # SHAP's local accuracy per generated token: scores + base value = the explained log-probability
    assert metrics["explain/shap/local_accuracy_error"] <= 1e-6
    assert run.data.tags[C.TAG_DATA_NAME] == "lm-recall"


def test_attribution_table_heatmaps_and_report_are_logged(lm_run):
    client, run_id = lm_run["client"], lm_run["run"].info.run_id
    table = pd.read_parquet(client.download_artifacts(run_id, C.ATTRIBUTIONS, str(lm_run["tmp"])))
    assert list(table.columns) == ["example", "step", "generated_token", "source_position", "source_token",
                                   "method", "score", "gold"]
    assert set(table["method"]) == {"shap", "attention", "rollout", "grad_attention", "input_x_gradient", "random_order"}
    assert table["gold"].any()
    views = [a.path for a in client.list_artifacts(run_id, C.GENERATION_HEATMAPS_DIR)]
    assert sum(p.endswith(".png") for p in views) >= 1 and sum(p.endswith(".html") for p in views) >= 1
    page = open(client.download_artifacts(run_id, next(p for p in views if p.endswith(".html")),
                                          str(lm_run["tmp"]))).read()
    assert "<script" not in page.lower()
    assert client.list_artifacts(run_id, C.REPORT_DIR)
    report = next(p for p in (lm_run["tmp"] / "reports").rglob("report.md"))
    text = report.read_text()
    assert "Generation results" in text and "Explanations per generated token" in text
    # the config is compared with the experiment's own: the table lists what the command changed on top
    table = text[text.index("Differences from the default config (conf/run.yaml with experiment=lm\\_recall)"):]
    table = table[:table.index("*Compared key by key")]
    assert "| data.source.n\\_train | 4000 | 1500 | changed |" in table
    assert "task.\\_target\\_" not in table and "model.\\_target\\_" not in table


def test_pyfunc_returns_generated_text(lm_run):
    run_id = lm_run["run"].info.run_id
    local = download_run_model(lm_run["uri"], run_id)
    assert not list(Path(local).rglob("*.pkl"))  # models from code: nothing to unpickle
    model = mlflow.pyfunc.load_model(str(local))
    prompts = ["k1 v2 k3 v4 ? k1", "k5 v6 ? k5"]
    out = model.predict(pd.DataFrame({"prompt": prompts}), params={"max_new_tokens": 2})
    assert list(out.columns) == ["generated"]
    # the served text is the greedy continuation of the run's weights (an undertrained model may stop at [EOS])
    files = load_lm_dir(next(Path(local).rglob(WEIGHTS_FILE)).parent)
    vocab = files.vocab
    assert out["generated"].tolist() == [vocab.decode(generate(files.model, vocab.encode(p), 2, vocab.eos_id))
                                         for p in prompts]


def test_classifier_explain_config_on_an_lm_fails_before_any_run(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=lm_recall", "explain=default", "data.source.n_train=50"],
                         config_name="run", tiny=False)
    with pytest.raises(UserError, match=r"explain\.shap: .*task=lm takes explain=lm"):
        build_job(cfg)


def test_lm_explain_config_on_a_classifier_fails_before_any_run(tmp_path):
    cfg = compose_config(tmp_path, ["explain=lm"], config_name="run")
    with pytest.raises(UserError, match=r"explain\.shap: GenerationMethodConfig is not a classifier explainer"):
        build_job(cfg)


def test_prompt_longer_than_the_context_fails_before_any_run(tmp_path):
    cfg = compose_config(tmp_path, ["experiment=lm_recall", "data.source.n_train=50", "model.max_positions=8"],
                         config_name="run", tiny=False)
    with pytest.raises(UserError, match=r"data\.max_length: 32 exceeds model\.max_positions=8"):
        build_job(cfg)


def test_empty_corpus_fails_before_any_run(tmp_path):
    (tmp_path / "empty.txt").write_text("   \n", encoding="utf-8")
    cfg = compose_config(tmp_path, ["task=lm", "data=text_files", f"data.source.train={tmp_path / 'empty.txt'}",
                                    "model=decoder_tiny", "explain=lm", "robustness=lm"], config_name="run", tiny=False)
    with pytest.raises(UserError, match=r"empty\.txt \(train\): the corpus is empty"):
        build_job(cfg)


def test_a_text_corpus_runs_end_to_end_with_experiment_lm_text(tmp_path):
    """The README's command for any corpus: experiment=lm_text picks the LM groups and monitors
    val/loss (a corpus has no answer to reach). A Chinese corpus is read character by character
    (data/words.py), as the classifier's tokenizer reads it: a vocabulary of characters, not of
    whole sentences."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("今天天气很好。我们一起去公园散步。公园里有很多人。\nThe park is full of people today.\n" * 40,
                      encoding="utf-8")
    overrides = ["experiment=lm_text", f"data.source.train={corpus}", "data.source.block_words=16",
                 "trainer.max_epochs=1", "trainer=cpu", "callbacks.rich_progress_bar=null", "logger.system_metrics=false",
                 "explain.n_examples=2", "explain.n_heatmaps=1", "explain.shap.max_evals=64", "robustness.curve_k=4"]
    vocab = build_job(compose_config(tmp_path, overrides, config_name="run", tiny=False)).datamodule.vocab
    assert {"公", "园", "the", "park"} <= set(vocab.tokens) and "今天天气很好。我们一起去公园散步。" not in vocab.tokens
    done = run_cli("pipeline.run", *overrides, cwd=tmp_path, env={"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED" and run.data.tags["experiment"] == "lm_text"
    assert {"val/loss", "val/perplexity", "test/answer_acc", "explain/shap/comprehensiveness"} <= set(run.data.metrics)


def test_vocabulary_mismatch_with_a_pretrained_causal_lm_fails_before_any_run(tmp_path):
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "tiny-gpt2"  # lm_recall's vocabulary has 30 tokens, this model 40
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=40, n_positions=40, n_embd=16, n_layer=1,
                                                         n_head=2)).save_pretrained(folder)
    cfg = compose_config(tmp_path, ["experiment=lm_recall", "data.source.n_train=50", "model=hf_causal",
                                    f"model.pretrained={folder}"], config_name="run", tiny=False)
    with pytest.raises(UserError, match=r"invalid config model\.pretrained: vocabulary mismatch: the data has 30 "
                                        r"tokens but .*tiny-gpt2 has 40"):
        build_job(cfg)


@pytest.mark.parametrize("value, expected", [("0", r"torch_threads: must be >= 1"), ("two", r"torch_threads: expected int")])
def test_bad_torch_threads_fail_before_any_run(tmp_path, value, expected):
    cfg = compose_config(tmp_path, ["experiment=lm_recall", f"torch_threads={value}"], config_name="run", tiny=False)
    with pytest.raises(UserError, match=expected):
        build_job(cfg)


@pytest.mark.parametrize("config_name", ["explain", "robustness"])
def test_the_later_stages_take_torch_threads_too(tmp_path, config_name):
    """pipeline.explain|robustness run_id=... torch_threads=1: the derived stages set it (the
    explain stage on a shared machine is faster with 1, README Performance), and check it."""
    cfg = compose_config(tmp_path, ["run_id=abc", "torch_threads=0"], config_name=config_name, tiny=False)
    with pytest.raises(UserError, match=r"torch_threads: must be >= 1"):
        build_job(cfg, with_data=False)


def test_last_line_prints_the_tasks_headline_metrics():
    from glassworks.tasks.classify import ClassifyTask
    from glassworks.tasks.lm import LMTask
    from pipeline.run import headline

    metrics = {"test/answer_acc": 1.0, "val/perplexity": 1.25, "explain/shap/hit_at_1": 0.9, "test/acc": 0.5}
    assert headline(LMTask(), metrics) == ("test/answer_acc=1.0000, val/perplexity=1.2500, explain/shap/hit_at_1=0.9000 "
                                           "(not measured in this run: explain/random_order/hit_at_1)")
    assert headline(ClassifyTask(), metrics) == "test/acc=0.5000"
    # a text corpus: no answers to score, no gold evidence
    assert headline(LMTask(), {"val/perplexity": 3.5}) == (
        "val/perplexity=3.5000 (not measured in this run: test/answer_acc, explain/shap/hit_at_1, "
        "explain/random_order/hit_at_1)")
    assert headline(ClassifyTask(), {}) == "no headline metric (not measured in this run: test/acc)"


def test_pipeline_robustness_prints_the_tasks_robustness_headline():
    from glassworks.tasks.classify import ClassifyTask
    from glassworks.tasks.lm import LMTask
    from pipeline.robustness import finished_line

    metrics = {"shap/deletion_auc": 0.31234, "shap/attack_success": 0.9, "random_order/deletion_auc": 0.5,
               "seconds_per_example": 0.1}
    assert finished_line(LMTask(), metrics) == "deletion_auc {'shap': 0.312, 'random_order': 0.5}"
    assert finished_line(ClassifyTask(), metrics) == "attack_success {'shap': 0.9}"


def test_lm_task_implements_the_protocol():
    from glassworks.tasks.base import Task
    from glassworks.tasks.lm import LMTask

    assert isinstance(LMTask(), Task)


def test_batched_greedy_equals_one_by_one_generation():
    import torch

    from glassworks.models.decoder import DecoderConfig
    from glassworks.models.generation import generate, greedy_batch

    torch.manual_seed(0)
    model = DecoderConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, max_positions=16).build(12, 0).eval()
    prompts = [[2, 5, 6], [2, 7, 8], [2, 9], [2, 5, 6, 7, 8]]
    assert greedy_batch(model, prompts, 4, eos_id=4) == [generate(model, p, 4, eos_id=4) for p in prompts]


def test_an_lm_run_reproduces(lm_run):
    # Seconds per generated token (explain/<method>/seconds_per_step) measure the machine: they
    # once made every LM run "NOT reproduced".
    run_id = lm_run["run"].info.run_id
    done = run_cli("pipeline.reproduce", f"run_id={run_id[:8]}", cwd=lm_run["tmp"],
                   env={"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "reproduced: all" in done.stdout and "explain/shap/seconds_per_step" in done.stdout


def test_a_derived_stage_on_an_lm_run_takes_the_lm_options_unless_told_otherwise(lm_run):
    run_id = lm_run["run"].info.run_id
    cfg = compose_config(lm_run["tmp"], [f"run_id={run_id[:8]}", "explain.methods=[shap,rollout]"],
                         config_name="explain", tiny=False)
    assert isinstance(build_job(cfg, with_data=False).task, LMTask)
    assert cfg.explain.shap._target_ == "glassworks.explain.generation.GenerationMethodConfig"
    assert list(cfg.explain.methods) == ["shap", "rollout"]  # the command's override still applies
    assert cfg.explain.seed == cfg.seed == 0  # interpolations resolve in the command's config
    cfg = compose_config(lm_run["tmp"], [f"run_id={run_id}"], config_name="robustness", tiny=False)
    build_job(cfg, with_data=False)
    assert cfg.robustness.attack is None and cfg.explain.shap.method == "shap"  # robustness=lm, explain=lm
    # an option named on the command line is kept, and checked against the run's task
    cfg = compose_config(lm_run["tmp"], [f"run_id={run_id}", "explain=default"], config_name="explain", tiny=False)
    with pytest.raises(UserError, match=r"explain\.shap: ShapExplainer explains a classifier.*task=lm takes explain=lm"):
        build_job(cfg, with_data=False)


def test_pipeline_explain_on_an_lm_run_makes_a_derived_run(lm_run):
    client, run_id = lm_run["client"], lm_run["run"].info.run_id
    done = run_cli("pipeline.explain", f"run_id={run_id[:8]}", "explain.methods=[shap]", "explain.n_examples=2",
                   "explain.n_heatmaps=0", "explain.shap.max_evals=64", cwd=lm_run["tmp"],
                   env={"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "is a task=lm run: explain=lm" in done.stdout + done.stderr
    assert "pipeline.explain finished: 2 examples, comprehensiveness {'shap': " in done.stdout
    (child,) = client.search_runs([lm_run["run"].info.experiment_id],
                                  filter_string=f"tags.glassworks.derived_from = '{run_id}' and tags.glassworks.derived_stage = 'explain'")
    assert child.info.status == "FINISHED" and "explain/shap/hit_at_1" in child.data.metrics
