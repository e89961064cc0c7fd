"""Sweep jobs that a cluster preempts or times out continue their own runs.

A job started again with the same overrides (submitit requeues a preempted or timed-out job,
``hydra/launcher=submitit_slurm|submitit_local``; so does SLURM itself under
``PreemptMode=REQUEUE``) used to open a new MLflow run and train from step 0, and the first run
stayed RUNNING or KILLED beside it. Now:

- a sweep job whose earlier attempt opened a run that did not finish continues that run
  (:func:`earlier_attempt`: the run with this sweep's id and this job's number), from its
  resume checkpoint, skipping the stages it finished (:mod:`pipeline.resume`);
- submitit tells a job it is about to be stopped with a signal (SIGUSR2, or the one
  ``SUBMITIT_PREEMPT_SIGNAL`` names), and its handler requeues the job at once. Inside a submitit
  job that notice stops training like SIGTERM: the current step ends and ``resume.ckpt`` is
  written (:class:`~glassworks.training.resume.ResumeCheckpoint`); anywhere else it stops the job
  at once. The run ends KILLED, its error naming the preemption, and only then does submitit's
  handler run (:func:`requeued_when_preempted`), which requeues the job or says why not
  (``max_num_timeout`` time limits used up).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hydra.core.hydra_config import HydraConfig
from mlflow.entities import Run

from glassworks.tracking.sweep import SweepInfo
from glassworks.preemption import Preempted, preempted
from pipeline.hydra_context import in_multirun, sweep_dir

log = logging.getLogger("glassworks.requeue")


def in_sweep() -> tuple[SweepInfo, int] | None:
    """(the sweep this process's job belongs to, the job's number), for a sweep with a parent run;
    None outside sweeps."""
    if not in_multirun():
        return None
    hydra_cfg = HydraConfig.get()
    info = SweepInfo.find(sweep_dir(hydra_cfg))
    return None if info is None else (info, int(hydra_cfg.job.num))


def earlier_attempt(sweep: SweepInfo, job_num: int, client: Any) -> Run | None:
    """The newest unfinished run an earlier attempt of job ``job_num`` opened (the job was requeued
    after a preemption or a time limit); None when this is the job's first attempt, or the earlier
    one finished its run (this attempt then opens a run of its own)."""
    unfinished = sweep.job_runs(client, job_num, unfinished=True)
    return unfinished[0] if unfinished else None


def preemption_signal() -> int | None:
    """The signal by which submitit tells this job it will be stopped, when this process is a
    submitit job that handles it; None elsewhere (a plain run, a joblib sweep, torchrun)."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    from submitit import JobEnvironment

    signum = JobEnvironment._usr_sig()  # SUBMITIT_PREEMPT_SIGNAL, USR2 by default
    return signum if callable(signal.getsignal(signum)) else None


@contextmanager
def requeued_when_preempted() -> Iterator[int | None]:
    """Around a job's work: submitit's notice raises :class:`Preempted` here (the train stage turns
    it into a stop at the next step boundary, :func:`preemption_signal`); once the run has ended
    KILLED, submitit's own handler requeues the job. Yields the signal (None: not a submitit job,
    and nothing changes)."""
    signum = preemption_signal()
    if signum is None:
        yield None
        return
    scheduler = signal.getsignal(signum)
    signal.signal(signum, _stop_now)
    try:
        yield signum
    except BaseException as error:
        stop = preempted(error)
        if stop is None:
            raise
        log.warning("%s; handing over to submitit, which requeues the job to continue its run", stop)
        signal.signal(signum, scheduler)
        try:
            scheduler(signum, None)  # requeues and exits the process
        except Exception as refused:  # noqa: BLE001 - submitit's UncompletedJobError: not requeued, and why
            log.error("submitit did not requeue the job (%s): its run stays KILLED with its resume "
                      "checkpoint; continue it with: %s", refused, stop.resume_command or "resume=<its run id>")
            raise
        raise
    finally:
        signal.signal(signum, scheduler)


def _stop_now(signum: int, frame: Any) -> None:
    # Between stages, or while spawned DDP ranks train (the notice reaches this process, not them).
    raise Preempted(f"preempted: received {signal.Signals(signum).name}, stopped at once "
                    "(not in a training step of this process)", signum)
