"""What the entry points read from Hydra's runtime (never from the library): the mode, the
overrides, the job's place in a sweep, the run's default name and Hydra's own config files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from glassworks.tracking.metadata import redact
from glassworks.tracking.sweep import SweepInfo

log = logging.getLogger("glassworks")


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def in_sweep_process() -> bool:
    """This sweep job runs in the sweep's own process (Hydra's basic launcher), not in a worker."""
    return in_multirun() and HydraConfig.get().runtime.choices.get("hydra/launcher") == "basic"


def sweep_dir(hydra_cfg: Any) -> Path:
    """``hydra.sweep.dir`` as an absolute path (relative ones are relative to the launch directory,
    which a job with ``hydra.job.chdir=true`` no longer runs in)."""
    path = Path(str(hydra_cfg.sweep.dir))
    return path if path.is_absolute() else Path(str(hydra_cfg.runtime.cwd)) / path


def sweep_child(tracking_uri: str | None = None) -> tuple[str, dict[str, str]] | None:
    """(run name, tags) for the current job's run when it belongs to a sweep with a parent run."""
    if not in_multirun():
        return None
    hydra_cfg = HydraConfig.get()
    info = SweepInfo.find(sweep_dir(hydra_cfg))
    if info is None:
        return None
    if tracking_uri and tracking_uri != info.tracking_uri:
        log.warning("this job tracks into %s but its sweep's parent run is in %s: set "
                    "logger.tracking_uri the same for every job", tracking_uri, info.tracking_uri)
    num = int(hydra_cfg.job.num)
    return info.child_run_name(num, [redact(o) for o in hydra_cfg.overrides.task]), info.child_tags(num)


def overrides() -> list[str]:
    """The command line's overrides, credentials in URLs redacted: they are logged as tags."""
    return [redact(o) for o in HydraConfig.get().overrides.task] if HydraConfig.initialized() else []


def run_name(cfg: DictConfig) -> str:
    if cfg.get("run_name"):
        return str(cfg.run_name)
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return f"{cfg.task_name}-{choices.get('model', 'model')}-{choices.get('data', 'data')}-seed{cfg.seed}"


def hydra_files() -> dict[str, str]:
    """Hydra's own ``.hydra/*.yaml`` of this job (they hold argv and overrides too), redacted;
    empty under the compose API (tests), where there is no output folder."""
    if not HydraConfig.initialized():
        return {}
    output_dir = OmegaConf.select(HydraConfig.get(), "runtime.output_dir", default=None)
    if not output_dir:
        return {}
    return {path.name: redact(path.read_text(encoding="utf-8"))
            for path in sorted((Path(output_dir) / ".hydra").glob("*.yaml"))}
