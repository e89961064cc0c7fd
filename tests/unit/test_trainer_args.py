"""Trainer keys checked against the installed Lightning's real pl.Trainer signature."""

from __future__ import annotations

import pytest

from glassworks.training.trainer_args import UnknownConfigKey, check_trainer_args, trainer_parameters


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
