"""The config an entry point would get, composed outside its Hydra main.

The tests and the benchmarks build jobs in this process (``pipeline.stage.build_job``) instead
of running a command; both compose through here (DESIGN.md: benchmarks never import the tests'
conftest, whose import starts pytest's machinery).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from pipeline.arguments import ids_as_text

CONF = Path(__file__).resolve().parents[1] / "conf"


def config_at(root: Path, overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """The `config_name` config (train, run, explain, ...) with `overrides`, as
    ``python -m pipeline.<config_name>`` started in `root` composes it: its store, outputs and
    caches under `root`. Hydra's runtime config is set, as a Hydra main sets it (the stages read
    the overrides from it), and left out of the returned config."""
    GlobalHydra.instance().clear()
    # logger.tracking_uri reads MLFLOW_TRACKING_URI: a config composed here tracks into root's own
    # store, never into one an earlier caller exported.
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    base = [f"paths.root_dir={root}", f"paths.output_dir={root / 'out'}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=[*base, *ids_as_text(overrides)],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def option_node(group: str, option: str) -> DictConfig:
    """The `group` node of the running command's config composed again with ``group=option``
    (its other overrides kept: ``explain.methods=[...]`` still applies), inside a Hydra main or
    after :func:`config_at`. What a derived stage takes when the run's task needs another option
    than the default one (``pipeline.explain run_id=<an lm run>`` takes ``explain=lm``)."""
    hydra_cfg = HydraConfig.get()
    overrides = [*hydra_cfg.overrides.task, f"{group}={option}"]
    if GlobalHydra.instance().is_initialized():
        return compose(hydra_cfg.job.config_name, overrides=overrides)[group]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(hydra_cfg.job.config_name, overrides=overrides)[group]
