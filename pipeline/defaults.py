"""The default config of an entry point, composed with Hydra for the report's "differences from
the defaults" table (``pipeline.report`` and ``pipeline.run`` pass it to the report stage)."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from glassworks.report.config_diff import flatten_values
from glassworks.report.run_report import DefaultConfig
from pipeline.job import without_later_stages

log = logging.getLogger("glassworks.report")
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def _compose(config_name: str) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside an @hydra.main app: same search path
        return compose(config_name=config_name)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name)


def default_config(task_name: str) -> DefaultConfig | None:
    """The task's config composed with no overrides, as plain values for the library.

    Keys whose default interpolates a location (``paths.*``, ``hydra:``) or an environment
    variable are skipped: they describe the machine, not choices of the experiment.
    """
    try:
        cfg = without_later_stages(_compose(task_name))
    except Exception as error:  # noqa: BLE001 - no default config: the report says so instead
        log.warning("report: could not compose the default %r config: %s", task_name, error)
        return None
    raw = flatten_values(OmegaConf.to_container(cfg, resolve=False))
    values, interpolations, skip = {}, {}, set()
    for key, value in raw.items():
        if isinstance(value, str) and "${" in value:
            # Locations and the environment (MLFLOW_TRACKING_URI, ...) are not experiment choices.
            if "hydra:" in value or "paths." in value or "oc.env:" in value:
                skip.add(key)
                continue
            interpolations[key] = value
        try:
            resolved = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
        except Exception:  # noqa: BLE001 - unresolvable here (a runtime value): not compared
            skip.add(key)
            continue
        values[key] = OmegaConf.to_container(resolved, resolve=True) if OmegaConf.is_config(resolved) else resolved
    return DefaultConfig(values, interpolations, skip, name=f"conf/{task_name}.yaml")
