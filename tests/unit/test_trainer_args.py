"""Trainer keys checked against the installed Lightning's real pl.Trainer signature."""

from __future__ import annotations

import pytest

from glassworks.training.trainer_args import UnknownConfigKey, check_placement, check_trainer_args, trainer_parameters
from glassworks.validation import ConfigError


def test_known_keys_pass_and_hydra_keys_are_ignored():
    assert {"max_epochs", "accelerator", "callbacks", "logger", "plugins"} <= trainer_parameters()
    check_trainer_args({"_target_": "pytorch_lightning.Trainer", "max_epochs": 2, "devices": 1})


@pytest.mark.parametrize(("key", "message"), [
    ("max_epoch", "unknown config key trainer.max_epoch; did you mean max_epochs?"),
    ("gradient_clip", "unknown config key trainer.gradient_clip; did you mean gradient_clip_val?"),
    ("colour", "unknown config key trainer.colour"),
])
def test_unknown_keys_name_the_key_and_the_close_one(key, message):
    with pytest.raises(UnknownConfigKey) as error:
        check_trainer_args({"max_epochs": 1, key: 2})
    assert str(error.value) == message and error.value.key == f"trainer.{key}"


@pytest.mark.parametrize(("args", "outside", "cuda", "key"), [
    ({"accelerator": "gpu", "devices": 1}, False, 0, "trainer.accelerator"),
    ({"accelerator": "cuda", "devices": 1}, True, 0, "trainer.accelerator"),  # no GPU under torchrun either
    ({"accelerator": "auto", "devices": 2}, False, 0, "trainer.devices"),
    ({"accelerator": "cpu", "devices": [0, 1]}, False, 0, "trainer.devices"),
    ({"accelerator": "cpu", "devices": 1, "num_nodes": 2}, False, 0, "trainer.devices"),
    ({"accelerator": "gpu", "devices": -1, "strategy": "ddp"}, False, 4, "trainer.devices"),  # -1: the 4 GPUs
    ({"accelerator": "auto", "devices": "auto"}, False, 2, "trainer.devices"),
])
def test_placements_refused_before_a_run_exists(args, outside, cuda, key):
    with pytest.raises(ConfigError) as error:
        check_placement(args, launched_outside=outside, cuda_devices=cuda)
    assert str(error.value).startswith(key)


@pytest.mark.parametrize(("args", "outside", "cuda"), [
    ({"accelerator": "auto", "devices": 1}, False, 0),
    ({"accelerator": "gpu", "devices": 1}, False, 1),
    ({"accelerator": "auto", "devices": "auto"}, False, 1),
    ({"accelerator": "auto", "devices": -1}, False, 0),  # -1 on CPUs: one process
    ({"accelerator": "cpu", "devices": 2, "strategy": {"_target_": "glassworks.training.distributed.ddp_strategy"}},
     False, 0),  # trainer=ddp_cpu
    ({"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}, False, 0),  # spawns the fit only
    ({"accelerator": "cpu", "devices": 1, "num_nodes": 2}, True, 0),  # torchrun started the ranks
])
def test_placements_that_run(args, outside, cuda):
    check_placement(args, launched_outside=outside, cuda_devices=cuda)
