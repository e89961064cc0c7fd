"""Where a run came from: git state, command line, environment. Values only, never secrets."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from glassworks.tracking import contract as C

# "scheme://user:password@host": the userinfo part of any URL (a tracking server, a database).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^\s/@'\"]+@")

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
    return {C.TAG_GIT_COMMIT: commit, C.TAG_GIT_DIRTY: str(dirty).lower()}


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


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***`` (``http://***@host``):
    a tracking URI such as ``http://user:token@host`` must not reach params, tags or logs."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def command_line() -> str:
    return redact(" ".join([Path(sys.executable).name, *sys.argv]))
