"""Every config group composes; bad config and bad data fail before any run, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from mlflow import MlflowClient
from mlflow.entities import ViewType
from omegaconf import OmegaConf

from pipeline.compose import CONF
from pipeline.defaults import default_config
from pipeline.job import LATER_STAGES
from pipeline.stage import UserError, build_job
from tests.conftest import compose_config, run_cli

GROUP_OPTIONS = [
    (group, path.stem)
    for group in ("data", "model", "trainer", "logger", "callbacks", "debug", "experiment")
    for path in sorted((CONF / group).glob("*.yaml"))
]


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_config_group_option_composes(tmp_path, group, option):
    cfg = compose_config(tmp_path, [f"{group}={option}"], config_name="train", tiny=False)
    assert cfg.task_name == "train"
    if group == "model":
        if OmegaConf.is_missing(cfg.model, "pretrained"):
            assert option in ("hf", "hf_causal")  # the folder or hub id is the user's to give
        else:
            assert callable(instantiate(cfg.model).build)
    if group == "logger":
        assert instantiate(cfg.logger) is not None


@pytest.mark.parametrize("name", [path.stem for path in sorted((CONF / "experiment").glob("*.yaml"))])
def test_an_experiment_trains_alone_without_the_later_stages(tmp_path, name):
    # An experiment is a whole pipeline.run: it picks explain=lm (lm_*) or sets explain.n_examples
    # (minilm_*). Under pipeline.train those compose as under pipeline.run, and the job leaves them out.
    whole = compose_config(tmp_path, [f"experiment={name}"], config_name="run", tiny=False)
    cfg = compose_config(tmp_path, [f"experiment={name}"], config_name="train", tiny=False)
    for key in LATER_STAGES:
        assert OmegaConf.to_container(cfg[key]) == OmegaConf.to_container(whole[key]), key
    job = build_job(cfg, with_data=False)
    assert not any(key in job.cfg for key in LATER_STAGES)
    assert OmegaConf.to_container(job.cfg.model) == OmegaConf.to_container(whole.model)
    assert_no_runs(tmp_path / "mlruns" / "mlflow.db")


def test_the_reports_default_train_config_has_no_later_stage_keys():
    # A train run's report compares its config with these defaults: explain.* would all show as changed.
    train, run = default_config("train"), default_config("run")
    assert train is not None and run is not None
    assert not any(k.startswith(tuple(f"{s}." for s in LATER_STAGES)) for k in train.values)
    assert all(any(k.startswith(f"{s}.") for k in run.values) for s in LATER_STAGES)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.d_model=30", "model"),  # not divisible by n_heads
        ("model.n_layers=0", "model.n_layers"),
        ("model.d_model=abc", "model.d_model"),
        ("model.dropout=1.5", "model.dropout"),
        ("optimizer.lr=-1", "optimizer"),
        ("data.max_length=0", "data.max_length"),
        ("data.max_length=100000", "data.max_length"),
        ("data.source.n_train=-5", "data.source.n_train"),
        ("data.tokenizer.kind=sentencepiece", "data.tokenizer.kind"),
        ("+model.colour=blue", "model.colour"),
    ],
)
def test_bad_config_value_names_the_key(tmp_path, override, expected):
    cfg = compose_config(tmp_path, [override])
    with pytest.raises(UserError) as info:
        build_job(cfg)
    assert expected in str(info.value)
    assert_no_runs(tmp_path / "mlruns" / "mlflow.db")


def test_an_optimizer_without_an_argument_of_the_config_names_that_key(tmp_path):
    # LBFGS takes neither weight_decay nor foreach (conf/train.yaml sets both).
    cfg = compose_config(tmp_path, ["optimizer._target_=torch.optim.LBFGS", "~optimizer.weight_decay"])
    with pytest.raises(UserError, match=r"invalid config optimizer\.foreach: .*unexpected keyword argument 'foreach'"):
        build_job(cfg)
    assert_no_runs(tmp_path / "mlruns" / "mlflow.db")


def assert_no_runs(db: Path) -> None:
    """No run in ANY experiment of the store (runs go to `glassworks`, not to experiment 0)."""
    if not db.exists():
        return
    client = MlflowClient(f"sqlite:///{db}")
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(experiments, run_view_type=ViewType.ALL) if experiments else []
    assert not runs, [(r.info.experiment_id, r.info.run_name, r.info.status) for r in runs]


def test_assert_no_runs_sees_a_run_outside_experiment_0(tmp_path):
    db = tmp_path / "mlflow.db"
    client = MlflowClient(f"sqlite:///{db}")
    client.create_run(client.create_experiment("glassworks"))
    with pytest.raises(AssertionError, match="glassworks|RUNNING"):
        assert_no_runs(db)


def test_bad_data_file_fails_before_a_run(tmp_path):
    bad = tmp_path / "train.csv"
    bad.write_text("text,label\nhello world,pos\n   ,neg\n")
    cfg = compose_config(tmp_path, ["data=files", f"data.source.train={bad}"])
    with pytest.raises(UserError) as info:
        build_job(cfg)
    assert "train.csv" in str(info.value)
    assert "row" in str(info.value)


@pytest.mark.slow
def test_cli_bad_value_one_message_exit_2_no_run(tmp_path):
    out = run_cli("pipeline.train", "model.n_heads=3", cwd=tmp_path)
    assert out.returncode == 2
    assert "model" in out.stderr and "n_heads" in out.stderr
    assert "Traceback" not in out.stderr
    assert_no_runs(tmp_path / "mlruns" / "mlflow.db")


@pytest.mark.parametrize(("overrides", "message"), [
    # Lightning's DDP would start the whole command again in a second process: two runs, every
    # stage twice, and the job killed (until 2026-12-03).
    (["trainer.devices=2"], "invalid config trainer.devices: 2: 2 processes need the DDP strategy of "
                            "trainer=ddp_cpu"),
    # Refused by Lightning only once the run existed, which then stayed behind FAILED.
    (["trainer=gpu"], "invalid config trainer.accelerator: gpu: this machine has no CUDA device"),
])
def test_cli_a_placement_the_machine_cannot_run_fails_before_any_run(tmp_path, overrides, message):
    if "trainer=gpu" in overrides and torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    out = run_cli("pipeline.run", *overrides, cwd=tmp_path)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert_no_runs(tmp_path / "mlruns" / "mlflow.db")


@pytest.mark.slow
def test_cli_missing_file_names_it(tmp_path):
    out = run_cli("pipeline.train", "data=files", "data.source.train=nope/missing.csv", cwd=tmp_path)
    assert out.returncode == 2
    assert "missing.csv" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_cli_help_and_cfg_job(tmp_path):
    helped = run_cli("pipeline.train", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "trainer: cpu, ddp, ddp_cpu, default, gpu" in helped.stdout
    shown = run_cli("pipeline.train", "model=small", "seed=7", "--cfg", "job", cwd=tmp_path)
    assert shown.returncode == 0 and "d_model: 128" in shown.stdout and "seed: 7" in shown.stdout
    completion = run_cli("pipeline.train", "-sc", "install=bash", cwd=tmp_path)
    assert completion.returncode == 0 and "complete" in completion.stdout


def test_a_file_whose_extension_says_nothing_reads_with_data_source_format(tmp_path):
    rows = "\n".join(f"{'a fine' if i % 2 else 'a dull'} film number {i},{'pos' if i % 2 else 'neg'}" for i in range(60))
    (tmp_path / "reviews.txt").write_text("text,label\n" + rows + "\n")
    cfg = compose_config(tmp_path, ["data=files", f"data.source.train={tmp_path / 'reviews.txt'}",
                                    "data.source.format=csv"])
    job = build_job(cfg)
    assert sum(job.datamodule.stats["sizes"].values()) == 60 and job.datamodule.label_names == ["neg", "pos"]


@pytest.mark.parametrize("chosen", ["experiment=lm_recall", "+experiment=lm_recall"])
def test_a_run_made_with_an_experiment_is_compared_with_the_experiments_config(chosen):
    baseline = default_config("run", [chosen, "seed=3", "trainer.max_epochs=2"])
    assert baseline is not None and baseline.name == "conf/run.yaml with experiment=lm_recall"
    assert baseline.values["task._target_"] == "glassworks.tasks.lm.LMTask"
    assert baseline.values["seed"] == 0 and baseline.values["trainer.max_epochs"] == 6  # only the bundle
