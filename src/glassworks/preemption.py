"""A job told that it will be stopped (a cluster preempts it, or its time limit is near), or
interrupted (SIGTERM, Ctrl-C).

:class:`Preempted` is raised where the work stood (at a training step's end, after the resume
checkpoint: :class:`glassworks.training.resume.ResumeCheckpoint`); the tracker ends the run KILLED
and writes on it how to continue, and whoever sent the notice may requeue the job
(``pipeline.requeue``: submitit).
"""

from __future__ import annotations

import signal
from typing import Any


class Preempted(KeyboardInterrupt):
    """A KeyboardInterrupt, so every layer that tidies up after Ctrl-C does so here too.
    ``resume_command``: how to continue the run by hand, set by the tracker that ended it KILLED."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.resume_command: str | None = None


def preempted(error: BaseException | None) -> Preempted | None:
    """The :class:`Preempted` that ``error`` is or (Lightning turns a KeyboardInterrupt in a fit into
    ``SystemExit(1)``) that it was raised while handling."""
    return _in_context(error, Preempted)


def interrupted(error: BaseException | None) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, a signal, a preemption) that ``error`` is or was raised while
    handling (Lightning's ``SystemExit(1)`` after an interrupt in a fit)."""
    return _in_context(error, KeyboardInterrupt)


def _in_context(error: BaseException | None, kind: type[BaseException]) -> Any:
    while error is not None:
        if isinstance(error, kind):
            return error
        error = error.__context__
    return None


def raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    """A signal handler (for SIGTERM): the signal becomes a KeyboardInterrupt, so a process that
    would otherwise end at once unwinds, and what tidies up after Ctrl-C (a run ended KILLED, a
    sweep's parent closed) runs."""
    raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")


EXIT_STOPPED = 130  # the shell's code for a process that Ctrl-C (SIGINT) ended


def stopped_line(stop: KeyboardInterrupt) -> str:
    """The one line a command stopped by Ctrl-C or a signal ends with, in place of Python's traceback."""
    return f"stopped: {str(stop) or 'Ctrl-C'}"
