"""Scratch folders: every temporary file of a command lives under one folder that goes when it ends.

A stage downloads the run's model, writes its artifacts locally before logging them, reads the
config back; each of those needs a local folder that outlives the function that made it (the
caller reads the downloaded files). ``scratch_session()`` around a whole command makes one
``glassworks-<pid>-*`` folder in the system temp dir; :func:`scratch_dir` hands out subfolders of
it, and the session removes the lot on success, failure or Ctrl-C. While a session is open, the
process's ``tempfile`` folder and the ``TMPDIR`` of the processes it starts are the session's, so
the temp files of the libraries it calls (MLflow, torch) and of its DDP ranks go with it too. Outside a session (library use, tests of one function)
:func:`scratch_dir` makes a plain temp folder, as ``mkdtemp`` would.

A command killed with SIGKILL (``kill -9``, the OOM killer, a lost node) runs no cleanup, and its
folder stays: ~1.3 MB for a default run, the downloaded model and its explanations. So a session
holds an exclusive ``flock`` on a file in its folder for as long as it lives, which the kernel
drops with the process however it dies, and each new session removes the folders whose lock it
can take (:func:`remove_abandoned`): their owners are gone. A folder in use is never touched: its
lock is held (by the command, or by a child it forked that still runs), and a folder without a
lock file (being made, or made by another version) is left alone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
PREFIX = "glassworks-"  # every temp folder the project makes starts with it
OWNER_LOCK = ".owner.lock"  # in a session folder: locked for as long as its command lives
SESSION_NAME = re.compile(rf"{re.escape(PREFIX)}(\d+)-")  # a session's folder: glassworks-<pid>-<random>

try:  # POSIX; elsewhere folders of killed commands stay, as before
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_session: list[Path] = []  # the open session's folder; nested sessions reuse the outer one


@contextmanager
def scratch_session() -> Iterator[Path]:
    """One folder for every scratch_dir() of the block, removed when the block ends however it ends."""
    if _session:
        yield _session[-1]
        return
    remove_abandoned()
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    lock = _hold_owner_lock(root)
    _session.append(root)
    # The libraries' temp files too (MLflow's model folder while it logs one, torch's spawn error
    # files): a kill -9 mid-log_model left a tmp* folder holding the model's weights in /tmp. And
    # those of the processes the command starts (TMPDIR): each spawned DDP fit left an empty
    # folder there (Lightning's rank 0 hands its weights back through a mkdtemp it never removes).
    previous, tempfile.tempdir = tempfile.tempdir, str(root)
    previous_env = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(root)
    try:
        yield root
    finally:
        tempfile.tempdir = previous
        if previous_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous_env
        _session.pop()
        shutil.rmtree(root, ignore_errors=True)
        if lock is not None:
            os.close(lock)  # after the folder went: a sweeping session never sees it unlocked
        log.debug("removed scratch folder %s", root)


def _hold_owner_lock(root: Path) -> int | None:
    """Lock a new file, then give it its name: no other session can open ``OWNER_LOCK`` before it
    is locked and mistake the folder for an abandoned one. Returns the descriptor to keep open."""
    if fcntl is None:
        return None
    staging = root / f"{OWNER_LOCK}.{os.getpid()}"
    fd = os.open(staging, os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.rename(staging, root / OWNER_LOCK)  # the same inode: the lock goes with it
    return fd


def remove_abandoned(parent: Path | None = None, *, legacy: bool = False, dry_run: bool = False) -> list[Path]:
    """Remove the session folders in `parent` (the system temp folder) whose command is gone: ours
    (same user), with an ``OWNER_LOCK`` nobody holds. `legacy` also takes folders made before the
    lock existed (no lock file) whose pid in ``glassworks-<pid>-`` runs no process (`pipeline.doctor`
    does; a session does not). `dry_run`: remove nothing. Returns the folders removed (or found)."""
    if fcntl is None:
        return []
    parent = Path(parent if parent is not None else tempfile.gettempdir())
    removed: list[Path] = []
    start = time.perf_counter()
    try:
        entries = [e for e in os.scandir(parent) if SESSION_NAME.match(e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    for entry in entries:
        try:
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        with _claimed(Path(entry.path), legacy) as gone:
            if gone:
                if not dry_run:  # removed while claimed: a session ends by removing its folder, then unlocking
                    shutil.rmtree(entry.path, ignore_errors=True)
                removed.append(Path(entry.path))
    if removed and not dry_run:
        log.info("removed %d scratch folder(s) left in %s by commands that were killed (%.2f s)",
                 len(removed), parent, time.perf_counter() - start)
    return removed


@contextmanager
def _claimed(folder: Path, legacy: bool) -> Iterator[bool]:
    """Whether the command that made session `folder` is gone, its lock held here for the block."""
    fd = _open_lock(folder)
    if fd is None:  # being made right now, made before the lock existed, or not ours to open
        pid = int(SESSION_NAME.match(folder.name).group(1))
        yield legacy and not (folder / OWNER_LOCK).exists() and not _running(pid)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        locked = True
    except OSError:  # held: its command (or a child of it) still runs
        locked = False
    try:
        yield locked
    finally:
        os.close(fd)


def _open_lock(folder: Path) -> int | None:
    try:
        return os.open(folder / OWNER_LOCK, os.O_RDWR)
    except OSError:
        return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True


def scratch_dir(what: str) -> Path:
    """A fresh empty folder named after `what` (``explain``, ``run-model``, ...), inside the open
    session (removed with it) or, outside one, in the system temp dir (the caller's to remove)."""
    parent = _session[-1] if _session else None
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{what}-", dir=parent))
