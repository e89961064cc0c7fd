"""Every setting of a data source or model is a key of its conf/ file: a README that says
`model.smear_keys=false` or an error that says `data.source.format=csv` must not meet Hydra's
"Key 'smear_keys' is not in struct" (it took a `+`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from pipeline.compose import CONF


def _targets(node, path):
    """(key path, class, the node's keys) of every ``_target_`` dataclass in a config node."""
    if isinstance(node, dict):
        if "_target_" in node:
            cls = get_class(node["_target_"])
            if dataclasses.is_dataclass(cls):
                yield path, cls, set(node)
        for key, value in node.items():
            yield from _targets(value, f"{path}.{key}" if path else str(key))


@pytest.mark.parametrize("conf_file", sorted([*(CONF / "data").glob("*.yaml"), *(CONF / "model").glob("*.yaml")]),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_setting_of_a_source_and_a_model_is_in_its_conf_file(conf_file: Path):
    node = OmegaConf.to_container(OmegaConf.load(conf_file), resolve=False)
    for path, cls, keys in _targets(node, ""):
        settings = {f.name for f in dataclasses.fields(cls) if f.init}
        assert settings <= keys, f"{conf_file.name} {path or '<root>'} ({cls.__name__}) lacks {sorted(settings - keys)}"
