"""The task seam: conf/task/ selects the task object every stage calls; a run made before the seam
(no ``task`` in its logged config) is a classifier."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from glassworks.tasks.base import Task
from glassworks.tasks.classify import ClassifyTask
from glassworks.validation import UserError
from pipeline.job import build_job, build_task
from tests.conftest import compose_config


def test_classify_task_implements_the_protocol():
    assert isinstance(ClassifyTask(), Task)


def test_task_group_is_composed_and_built_before_the_run(tmp_path):
    cfg = compose_config(tmp_path, ["logger=none"])
    assert cfg.task._target_ == "glassworks.tasks.classify.ClassifyTask"
    job = build_job(cfg, with_data=False)
    assert isinstance(job.task, ClassifyTask) and job.task.name == "classify"


def test_a_config_without_task_is_a_classifier():
    assert isinstance(build_task(None), ClassifyTask)


def test_a_target_that_is_no_task_fails_naming_the_key():
    with pytest.raises(UserError, match="task"):
        build_task(OmegaConf.create({"_target_": "collections.OrderedDict"}))


def test_classify_task_builds_its_module_from_the_datamodule(tmp_path):
    cfg = compose_config(tmp_path, ["logger=none"])
    job = build_job(cfg)
    module = job.task.build_module(job.model_config, job.datamodule, job.optimizer, job.scheduler,
                                   mask_token_prob=0.1)
    assert module.label_names == job.datamodule.label_names
    assert module.mask_id == job.datamodule.tokenizer.mask_id
