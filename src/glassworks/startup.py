"""Imports without the cyclic collector, in the processes that start by importing a job.

A pipeline process imports torch, Lightning, MLflow and Hydra before it does anything: ~970 000
long-lived objects, none of them garbage. With the collector on, it scanned them again and again
while they were made, and once more when the process ended (~2.5 s of ~11, bench/README.md). So in
the processes below, importing ``pipeline`` turns the collector off (:func:`pause_for_imports`)
and the job's first statement turns it back on (:func:`imports_done`), after moving what the
imports made to the permanent generation that no collection scans.

The processes, and where each one's job starts:

- ``python -m pipeline.<entry>`` (also each torchrun rank, and the test suite's fork server's
  children): the entry's ``__main__`` block;
- a joblib (loky) worker of a Hydra joblib sweep, a submitit job: the entry's Hydra task function,
  which the worker unpickled (and so imported) before calling it;
- a DDP rank that ``trainer=ddp`` / ``ddp_cpu`` spawned: the strategy's ``setup_environment``
  (:class:`glassworks.training.distributed.RankStrategy`).

Other processes started by multiprocessing's spawn (a DataLoader worker where spawn is the
default, a user's pool) keep their collector: they too import the pipeline while they unpickle
their target, but nothing of ours runs when their work starts (spawn calls no after-fork hook).
So a spawned process pauses only when its parent marked it: :func:`marking_spawned_ranks` sets
:data:`RANK_MARK` in the environment while the ranks are spawned, and each rank removes it as its
work starts, before it starts processes of its own.

Anything else that imports ``pipeline`` (pytest, a notebook, a script) keeps its collector as it is.
One gap: a loky or submitit worker that imports ``pipeline`` for work other than an entry's task
function stays paused until it ends (Hydra's launchers always call the task function).
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

# The modules that loky and submitit run as `python -m <module>` to host a worker.
WORKER_MAINS = ("joblib.externals.loky.backend.popen_loky_posix", "loky.backend.popen_loky_posix",
                "submitit.core._submit")

# The flag multiprocessing's spawn start method passes to its children's command line.
SPAWN_FLAG = "--multiprocessing-fork"
# Set by a parent while it spawns DDP ranks: those children import the pipeline, then train.
RANK_MARK = "GLASSWORKS_SPAWNED_RANK"

_paused = False


def starts_with_imports(argv: Sequence[str], orig_argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether this process imports a job before doing anything else: `argv` is ``sys.argv`` now,
    `orig_argv` the interpreter's own command line (``sys.orig_argv``: spawn rewrites ``sys.argv``
    to the parent's), `environ` its environment."""
    if list(argv[:1]) == ["-m"]:  # runpy is importing the package of a `python -m` module
        return True
    if SPAWN_FLAG in orig_argv:
        return environ.get(RANK_MARK) == "1"
    run_module = [orig_argv[i + 1] for i, arg in enumerate(orig_argv[:-1]) if arg == "-m"]
    return bool(run_module) and run_module[0] in WORKER_MAINS


def this_process_starts_with_imports() -> bool:
    return starts_with_imports(sys.argv, sys.orig_argv, os.environ)


def pause_for_imports() -> None:
    """Turn the collector off if this process starts by importing a job (see the module doc)."""
    global _paused
    if not _paused and gc.isenabled() and this_process_starts_with_imports():
        gc.disable()
        _paused = True


def imports_done() -> None:
    """The job starts: if :func:`pause_for_imports` turned the collector off, move what exists so
    far (modules, classes, functions) to the permanent generation and turn the collector on.
    Called again, or in a process that was not paused, it does nothing: a sweep worker that runs
    a second job must not freeze the first job's garbage."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def collector_paused() -> bool:
    return _paused


@contextmanager
def marking_spawned_ranks(spawns: bool) -> Iterator[None]:
    """Around a fit that spawns its DDP ranks (`spawns`): the ranks import with the collector off."""
    if not spawns or RANK_MARK in os.environ:
        yield
        return
    os.environ[RANK_MARK] = "1"
    try:
        yield
    finally:
        os.environ.pop(RANK_MARK, None)


def rank_started() -> None:
    """A spawned DDP rank's work starts: resume the collector, and unmark the environment that
    the rank's own children (DataLoader workers) would inherit."""
    os.environ.pop(RANK_MARK, None)
    imports_done()
