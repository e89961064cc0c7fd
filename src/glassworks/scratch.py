"""Scratch folders: every temporary file of a command lives under one folder that goes when it ends.

A stage downloads the run's model, writes its artifacts locally before logging them, reads the
config back; each of those needs a local folder that outlives the function that made it (the
caller reads the downloaded files). ``scratch_session()`` around a whole command makes one
``glassworks-<pid>-*`` folder in the system temp dir; :func:`scratch_dir` hands out subfolders of
it, and the session removes the lot on success, failure or Ctrl-C. Outside a session (library use,
tests of one function) :func:`scratch_dir` makes a plain temp folder, as ``mkdtemp`` would.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
PREFIX = "glassworks-"  # every temp folder the project makes starts with it

_session: list[Path] = []  # the open session's folder; nested sessions reuse the outer one


@contextmanager
def scratch_session() -> Iterator[Path]:
    """One folder for every scratch_dir() of the block, removed when the block ends however it ends."""
    if _session:
        yield _session[-1]
        return
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    _session.append(root)
    try:
        yield root
    finally:
        _session.pop()
        shutil.rmtree(root, ignore_errors=True)
        log.debug("removed scratch folder %s", root)


def scratch_dir(what: str) -> Path:
    """A fresh empty folder named after `what` (``explain``, ``run-model``, ...), inside the open
    session (removed with it) or, outside one, in the system temp dir (the caller's to remove)."""
    parent = _session[-1] if _session else None
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{what}-", dir=parent))
