"""Where a run came from: git state, command line, environment. Values only, never secrets."""

from __future__ import annotations

import platform
import re
import shlex
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


def command_line(argv: list[str] | None = None, main_module: str | None = None, cwd: str | Path | None = None) -> str:
    """The command as the user typed it, with no path of this machine in it: ``python -m
    pipeline.run seed=1`` (not ``python /abs/path/pipeline/run.py``), a script as its path
    relative to the working directory (its file name when it lies outside), credentials of URLs
    redacted. Defaults: ``sys.argv``, the ``-m`` module ``__main__`` was started as, the cwd."""
    argv = list(sys.argv if argv is None else argv)
    head, *args = argv or [""]
    if main_module is None:  # started as `python -m <module>`: argv[0] is that module's file
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        origin = getattr(spec, "origin", None)
        same = bool(origin and head) and Path(origin).resolve() == Path(head).resolve()
        main_module = spec.name.removesuffix(".__main__") if same and spec.name else None
    if main_module:
        program = ["python", "-m", main_module]
    else:
        program = ["python", shown_path(head, cwd)] if head.endswith(".py") else [shown_path(head, cwd)]
    return redact(" ".join(program + [shlex.quote(a) if _needs_quotes(a) else a for a in args]))


def shown_path(path: str | Path, root: str | Path | None = None) -> str:
    """A path as a shared page may show it: relative to `root` (default: the cwd) when inside it,
    else only its file name; relative paths and URIs are returned unchanged."""
    text = str(path)
    if "://" in text or not Path(text).is_absolute():
        return text
    root_path = Path(root if root is not None else Path.cwd()).resolve()
    try:
        return str(Path(text).resolve().relative_to(root_path)) or "."
    except ValueError:
        return Path(text).name


def _needs_quotes(arg: str) -> bool:
    # Hydra's brackets and commas are typed bare (``explain.methods=[shap,rollout]``); what a
    # shell would split or expand is quoted so the line can be pasted back.
    return arg == "" or any(c in arg for c in " \t\n'\"$`&|;<>()\\!#")


def shareable(text: str, root: str | Path | None = None) -> str:
    """`text` (a command line, a config, a URI) with no path of this machine in it: every
    absolute path inside `root` (default: the cwd, the project root a pipeline runs from) becomes
    relative to it (``sqlite:////home/me/proj/mlruns/mlflow.db`` -> ``sqlite:///mlruns/mlflow.db``,
    ``/home/me/proj/outputs/x`` -> ``outputs/x``), a script run as ``python /abs/pipeline/run.py``
    becomes ``python -m pipeline.run``; URL credentials are redacted. Paths outside `root` are
    left as the user typed them."""
    base = str(Path(root if root is not None else Path.cwd()).resolve()).rstrip("/")
    text = redact(text)
    text = re.sub(r"(\bpython[0-9.]*\s+)(\S*/)?pipeline/([a-z_]+)\.py\b", r"python -m pipeline.\3", text)
    if base and base != "/":
        text = text.replace(f"file://{base}/", "").replace(f"{base}/", "")
        text = re.sub(rf"{re.escape(base)}(?=$|[\s'\",;:\]}}])", ".", text)
    return text
