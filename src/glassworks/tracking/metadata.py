"""Where a run came from: git state, command line, environment. Values only, never secrets."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("glassworks", "torch", "pytorch-lightning", "hydra-core", "mlflow", "datasets",
            "tokenizers", "shap", "torchmetrics", "numpy")


def git_state(repo_dir: str | Path) -> dict[str, str]:
    """Commit and dirty flag of ``repo_dir``; empty when it is not a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"mlflow.source.git.commit": commit, "glassworks.git_dirty": str(dirty).lower()}


def environment() -> dict[str, str]:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        import torch

        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        info["torch.threads"] = str(torch.get_num_threads())
    except ImportError:
        pass
    return info


def command_line() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])
