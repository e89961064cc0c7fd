"""The default config of an entry point, composed with Hydra for the report's "differences from
the defaults" table (``pipeline.report`` and ``pipeline.run`` pass it to the report stage)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from glassworks.report.config_diff import flatten_values
from glassworks.report.run_report import DefaultConfig
from pipeline.job import without_later_stages

log = logging.getLogger("glassworks.report")
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


# Override groups that are bundles of settings (conf/experiment/): a run made with one is compared
# with the bundle's config, so the table shows what the command changed on top of it.
BASELINE_GROUPS = ("experiment",)


def _compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside an @hydra.main app: same search path
        return compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def baseline_overrides(overrides: Sequence[str]) -> list[str]:
    """The run's overrides that choose a bundle (``experiment=lm_recall``; ``+experiment=`` too,
    which Hydra takes on the command line): its baseline, as the defaults list composes it."""
    return [o.lstrip("+") for o in overrides if o.split("=", 1)[0].lstrip("+") in BASELINE_GROUPS]


def default_config(task_name: str, overrides: Sequence[str] = ()) -> DefaultConfig | None:
    """The task's config composed with no overrides but the run's bundle (``experiment=...``,
    :func:`baseline_overrides` of the run's `overrides`), as plain values for the library.

    Keys whose default interpolates a location (``paths.*``, ``hydra:``) or an environment
    variable are skipped: they describe the machine, not choices of the experiment.
    """
    bundle = baseline_overrides(overrides)
    try:
        cfg = without_later_stages(_compose(task_name, bundle))
    except Exception as error:  # noqa: BLE001 - no default config: the report says so instead
        log.warning("report: could not compose the default %r config%s: %s", task_name,
                    f" with {' '.join(bundle)}" if bundle else "", error)
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
    return DefaultConfig(values, interpolations, skip,
                         name=f"conf/{task_name}.yaml" + (f" with {' '.join(bundle)}" if bundle else ""))
