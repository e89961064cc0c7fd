"""Fault injection for the fault-injection tests, loaded by Python at start-up when this folder
is on PYTHONPATH. Inactive unless GLASSWORKS_FAULT is set; then exactly one fault fires:

  step:N          SIGKILL right after optimizer step N, once the checkpoint writes asked for
                  before it have landed (off the training thread one may still be running: see
                  glassworks.training.checkpoint_io), so the file a resume finds is known
  signal:NAME:N   send this process signal NAME after step N (a graceful stop)
  signal:NAME:N:J the same, in job J of a sweep only (its hydra.job.num)
  save:N          SIGKILL in the middle of writing the N-th resume.ckpt (after ~64 KB)
  explain:N       SIGKILL when the explain stage starts its N-th method
  explain_signal:NAME:N  send this process signal NAME there instead (Ctrl-C is SIGINT)
  report          SIGKILL when the report stage writes its files
  raise:STAGE     raise RuntimeError inside STAGE (train, explain, robustness or report)
  raise:STAGE:J   the same, in job J of a sweep only
  raise_rank:R:N  raise RuntimeError on DDP rank R after step N (the other ranks are fine)

GLASSWORKS_GC_PROBE=FOLDER (with or without a fault) makes every training process write, after its
first optimizer step, FOLDER/<pid>.json: its DDP rank and the state of its cyclic collector
(glassworks.startup pauses it while a job imports).

These wrap real functions of the stack; nothing is mocked: the process really dies.
"""

from __future__ import annotations

import os
import signal

FAULT = os.environ.get("GLASSWORKS_FAULT", "")
GC_PROBE = os.environ.get("GLASSWORKS_GC_PROBE", "")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after_step(step: int, action) -> None:
    from glassworks.models.causal_lm import CausalLM
    from glassworks.models.lightning import TextClassifier

    for module in (TextClassifier, CausalLM):  # task=classify, task=lm
        _call_after_step(module, step, action)


def _call_after_step(module: type, step: int, action) -> None:
    original = module.on_train_batch_end

    def on_train_batch_end(self, outputs, batch, batch_idx):
        original(self, outputs, batch, batch_idx)
        if self.trainer.global_step == step:
            action(self.trainer)

    module.on_train_batch_end = on_train_batch_end


class _KillingWriter:
    """A file handle that dies after ``limit`` bytes: the write is really half done."""

    def __init__(self, handle, limit: int) -> None:
        self._handle, self._limit, self._written = handle, limit, 0

    def write(self, data) -> int:
        written = self._handle.write(data)
        self._written += written
        if self._written >= self._limit:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            _die()
        return written

    def __getattr__(self, name):
        return getattr(self._handle, name)


def _during_save(nth: int) -> None:
    import torch

    original = torch.save
    count = 0

    def save(obj, f, *args, **kwargs):
        nonlocal count
        if ".resume.ckpt." in str(getattr(f, "name", "")):
            count += 1
            if count == nth:
                f = _KillingWriter(f, 64 * 1024)
        return original(obj, f, *args, **kwargs)

    torch.save = save


def _during_explain(nth: int, action=_die) -> None:
    from glassworks.explain.runner import ExplainRunner

    original = ExplainRunner._explain
    count = 0

    def _explain(self, *args, **kwargs):
        nonlocal count
        count += 1
        if count == nth:
            action()
        return original(self, *args, **kwargs)

    ExplainRunner._explain = _explain


def _during_report() -> None:
    import glassworks.report.output as output

    def write_report(*args, **kwargs):
        _die()

    output.write_report = write_report


class InjectedFault(RuntimeError):
    pass


def _raise_in(stage: str, job: int | None = None) -> None:
    def failing(original):
        def fail(*args, **kwargs):
            if job is not None and _sweep_job() != job:  # the sweep's other jobs (one process: basic)
                return original(*args, **kwargs)
            raise InjectedFault(f"injected failure in the {stage} stage")
        return fail

    if stage == "train":
        from glassworks.models.lightning import TextClassifier

        TextClassifier.training_step = failing(TextClassifier.training_step)
    elif stage == "explain":
        from glassworks.explain.runner import ExplainRunner

        ExplainRunner.run = failing(ExplainRunner.run)
    elif stage == "robustness":
        from glassworks.robustness import RobustnessRunner

        RobustnessRunner.run = failing(RobustnessRunner.run)
    elif stage == "report":
        import glassworks.report.output as output

        output.write_report = failing(output.write_report)
    else:
        raise SystemExit(f"GLASSWORKS_FAULT=raise:{stage}: unknown stage")


def _sweep_job() -> int | None:
    from hydra.core.hydra_config import HydraConfig

    return int(HydraConfig.get().job.num) if HydraConfig.initialized() else None


def _kill_after_writes(trainer) -> None:
    trainer.strategy.checkpoint_io.wait()
    _die()


def _raise_on_rank(rank: int, step: int) -> None:
    def fail(trainer) -> None:
        import torch.distributed as dist

        if dist.is_initialized() and dist.get_rank() == rank:
            raise InjectedFault(f"injected failure on rank {rank} at step {step}")

    _after_step(step, fail)


def _probe_collector(folder: str) -> None:
    import gc
    import json
    from pathlib import Path

    def record(trainer) -> None:
        import torch.distributed as dist

        from glassworks.startup import collector_paused

        state = {"rank": dist.get_rank() if dist.is_initialized() else None, "enabled": gc.isenabled(),
                 "frozen": gc.get_freeze_count(), "paused": collector_paused()}
        Path(folder, f"{os.getpid()}.json").write_text(json.dumps(state))

    _after_step(1, record)


if GC_PROBE:
    _probe_collector(GC_PROBE)

if FAULT:
    kind, _, arg = FAULT.partition(":")
    if kind == "step":
        _after_step(int(arg), _kill_after_writes)
    elif kind == "signal":
        name, step, *job = arg.split(":")
        _after_step(int(step), lambda trainer: os.kill(os.getpid(), getattr(signal, name))
                    if not job or _sweep_job() == int(job[0]) else None)
    elif kind == "save":
        _during_save(int(arg))
    elif kind == "explain":
        _during_explain(int(arg))
    elif kind == "explain_signal":
        name, _, nth = arg.partition(":")
        _during_explain(int(nth), lambda: os.kill(os.getpid(), getattr(signal, name)))
    elif kind == "report":
        _during_report()
    elif kind == "raise":
        stage, _, job = arg.partition(":")
        _raise_in(stage, int(job) if job else None)
    elif kind == "raise_rank":
        rank, _, step = arg.partition(":")
        _raise_on_rank(int(rank), int(step))
    else:
        raise SystemExit(f"GLASSWORKS_FAULT={FAULT!r}: unknown fault")
