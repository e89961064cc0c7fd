"""Sweeps in MLflow, the Hydra side: python -m pipeline.run -m model.n_layers=1,2 seed=0,1

(Longer than an entry point: this is not one, but Hydra's callback; everything here talks to
Hydra's config, overrides parser and job returns. The sweep's MLflow side, the summary and the
best child, is :mod:`glassworks.tracking.sweep` and :mod:`glassworks.tracking.objective`.)

:class:`MLflowSweepCallback` (hooked in ``conf/hydra/default.yaml``) opens the sweep's parent
run before the first job (creating store and experiment once, so parallel jobs never race for
them), collects how every job ended, and after the last one writes the summary into the parent,
registers the best child's model and exits non-zero if any job failed. A job's run becomes a
nested child through ``pipeline.hydra_context.sweep_child`` (called when a stage opens its run).

Hydra swallows exceptions raised by callbacks (they become warnings), so the callback ends the
process with ``sys.exit`` where it must. A failed job makes the basic sweeper raise before
``on_multirun_end``; the parent is then closed by an ``atexit`` hook instead.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from glassworks.preemption import EXIT_STOPPED, raise_keyboard_interrupt, stopped_line
from glassworks.tracking import contract as C
from glassworks.tracking.metadata import command_line, git_state, redact
from glassworks.tracking.objective import MODES
from glassworks.tracking.params import flatten
from glassworks.tracking.sweep import (INFO_FILE, SWEEP_ENV, JobRecord, SweepInfo, SweepParent, SweepSummary,
                                       child_runs)
from pipeline.hydra_context import sweep_dir

if TYPE_CHECKING:
    import psutil

    from glassworks.report.output import WrittenReport
    from glassworks.stages.settings import SweepReportSettings

log = logging.getLogger("glassworks.sweep")
REPO_DIR = Path(__file__).resolve().parents[1]


class MLflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent: SweepParent | None = None
        self.report: SweepReportSettings | None = None  # None: no sweep report (report.sweep.enabled)
        self.written: WrittenReport | None = None
        self._interrupted = False
        self._stopping = False  # a joblib sweep's jobs are being stopped (_stop_joblib_jobs)

    # Pickled into joblib workers with Hydra's context: they only need on_job_end.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "parent": None, "report": None}

    # -- before the first job (the launching process) ----------------------------------------

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "optimized_metric" not in config or "logger" not in config:
            return  # a stage that is not a training sweep (e.g. pipeline.explain -m run_id=a,b)
        try:
            self._open(config)
        except Exception as error:  # noqa: BLE001 - Hydra would turn it into a warning and sweep untracked
            _fail(f"could not start the sweep: {type(error).__name__}: {error}", 1)

    def _open(self, config: DictConfig) -> None:
        mode = config.get("optimized_metric_mode", "max")
        if mode not in MODES:
            _fail(f"invalid config optimized_metric_mode: must be one of {list(MODES)}, got {mode!r}", 2)
        try:
            tracker = instantiate(config.logger)
        except Exception as error:  # noqa: BLE001 - reported as one line, like a job's bad config
            _fail(f"invalid config logger: {error.__cause__ or error}", 2)
        if not getattr(tracker, "enabled", False):
            return
        report = config.get("report")  # pipeline.run's sweeps; pipeline.train has no report stage
        if report is not None and report.get("sweep", {}).get("enabled", True):
            # Imported here: Hydra loads this callback in every process, which needs neither.
            from glassworks.validation import UserError
            from pipeline.plans import sweep_report_settings
            try:
                self.report = sweep_report_settings(config)
            except UserError as error:
                _fail(str(error), 2)
        try:
            tracker.check()  # a server that is down fails the sweep in seconds, before any job
        except Exception as error:  # noqa: BLE001 - StoreUnreachable, named by its URI
            _fail(f"invalid config logger.tracking_uri: {error}", 2)
        tracker.system_metrics = False  # the children sample the machine; the parent only waits

        overrides = [redact(o) for o in config.hydra.overrides.task]
        sweeps = swept(overrides, config.hydra.sweeper.get("params"))
        options = config.get("sweep") or {}
        base = config.get("run_name") or config.task_name
        name = options.get("name") or f"{base}-sweep-{time.strftime('%m%d-%H%M%S')}"
        parent = SweepParent(tracker, sweep_dir(config.hydra), str(name), str(config.optimized_metric),
                             mode, options.get("register_model_as"), list(sweeps))
        choices = config.hydra.runtime.choices
        tags = {
            C.TAG_TASK: f"{config.task_name}-sweep",
            C.TAG_COMMAND: command_line(),
            C.TAG_SWEEP_OVERRIDES: " ".join(overrides) or "(none)",
            C.TAG_SWEEP_LAUNCHER: str(choices.get("hydra/launcher")),
            C.TAG_SWEEP_SWEEPER: str(choices.get("hydra/sweeper")),
            C.TAG_SOURCE_NAME: f"pipeline.{config.task_name}",
            C.TAG_SOURCE_TYPE: "LOCAL",
            **git_state(REPO_DIR),
            **{str(k): redact(str(v)) for k, v in (config.get("tags") or {}).items()},
        }
        job_config = resolved(config)
        params = {**flatten(job_config), **{k: f"sweep: {v}" for k, v in sweeps.items()}}
        try:
            info = parent.open(tags, params, redact(OmegaConf.to_yaml(job_config)), overrides)
        except Exception as error:  # noqa: BLE001 - no parent, no sweep: stop before any job
            if tracker.run_id:
                tracker.end("FAILED", error, "sweep start")
            _fail(f"could not open the sweep's parent run in {redact(tracker.uri)}: "
                  f"{type(error).__name__}: {error}", 1)
        os.environ[SWEEP_ENV] = str(Path(info.sweep_dir) / INFO_FILE)
        self.parent = parent
        atexit.register(self._close_at_exit)
        _chain_excepthook(self, bool(config.get("traceback")))
        if str(choices.get("hydra/launcher")) == "joblib":
            # joblib kills its workers the moment an interrupt reaches its result loop: first let
            # the jobs end their runs (see _stop_joblib_jobs).
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, self._stop_joblib_jobs)
            # Workers killed that way leave their semaphores to multiprocessing's resource tracker,
            # which frees them and warns of a leak after the summary. It is a process of its own,
            # started with this process's -W options.
            sys.warnoptions.append("ignore::UserWarning:multiprocessing.resource_tracker")
        elif signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            # SIGTERM between jobs would end the process without atexit: make it an interrupt
            # (during a job the tracker's lifecycle does the same for the child run).
            signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
        print(f"\nSweep {name}: parent MLflow run {info.parent_run_id} in {redact(tracker.uri)}\n"
              f"  swept: {', '.join(f'{k}={v}' for k, v in sweeps.items()) or '(nothing)'}\n")

    # -- after every job (the job's own process, whichever launcher) --------------------------

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        info = SweepInfo.find(sweep_dir(config.hydra))
        if info is None:
            return
        # JobReturn.return_value re-raises a failed job's exception; the raw value is what we want.
        value = getattr(job_return, "_return_value", None)
        failed = job_return.status == JobStatus.FAILED
        info.write_record(JobRecord(
            job_num=int(config.hydra.job.num),
            overrides=[redact(str(o)) for o in (job_return.overrides or [])],
            status=job_return.status.name,
            error=f"{type(value).__name__}: {value}"[:2000] if failed else None,
            return_value=_float(value) if not failed else None,
        ))

    # -- after the last job (the launching process) -------------------------------------------

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.parent is None or self.parent.closed:
            return
        summary = self._close(aborted=False)
        if summary is None or summary.n_failed:
            sys.exit(1)

    def _stop_joblib_jobs(self, signum: int, frame: Any) -> None:
        """SIGINT or SIGTERM to a joblib sweep's process: its jobs, running in loky's worker
        processes, end their runs KILLED after their current step (with the resume checkpoint),
        then the interrupt goes on and joblib kills the workers. Until 2026-12-03 the workers were
        killed at once: a job killed mid-step left its run to be marked KILLED by the parent,
        resumable only from its last periodic checkpoint. A second signal (after the first one's
        echoes, glassworks.training.resume.SAME_STOP_S) stops everything at once."""
        import psutil

        name = signal.Signals(signum).name
        if self._stopping:
            raise KeyboardInterrupt(f"received {name} twice")
        self._stopping = True
        parent = self.parent
        workers = _job_processes("popen_loky_posix")
        if parent is not None and parent.info is not None and workers:
            print(f"stopping the sweep's jobs in {len(workers)} joblib worker(s): each ends its run KILLED "
                  "after its current step (Ctrl-C again to kill them now)", file=sys.stderr, flush=True)
            for worker in workers:  # the terminal's Ctrl-C reached them too: the same request
                with contextlib.suppress(psutil.Error):
                    worker.send_signal(signal.SIGTERM)
            _wait_for_runs_to_end(parent.tracker.client, parent.info, timeout_s=30.0)
        raise KeyboardInterrupt("" if signum == signal.SIGINT else f"received signal {name}")

    def _close_at_exit(self) -> None:
        # Reached when the sweeper raised (a failed job in the basic sweeper, Ctrl-C, ...).
        if self.parent is not None and not self.parent.closed:
            _stop_local_jobs()
            self._close(aborted=True)

    def _close(self, aborted: bool) -> SweepSummary | None:
        parent = self.parent
        assert parent is not None and parent.info is not None
        os.environ.pop(SWEEP_ENV, None)
        # Ctrl-C ends the sweep now; a report of the jobs so far is `pipeline.report sweep_id=`.
        write = self._write_report if self.report is not None and not self._interrupted else None
        try:
            summary = parent.close(aborted=aborted, interrupted=self._interrupted, before_end=write)
        except Exception as error:  # noqa: BLE001 - the parent is already marked FAILED
            print(f"error: sweep {parent.name}: writing the summary failed: {error}", file=sys.stderr)
            return None
        _report(parent, summary, self.written)
        return summary

    def _write_report(self, parent_run_id: str, status: str) -> None:
        """The sweep report, written to disk and logged to the parent while it is still open (it
        shows the `status` the parent ends with). A report that fails is a warning: the children
        and the summary are the sweep's results."""
        assert self.parent is not None and self.report is not None
        from glassworks.stages import report as report_stage  # matplotlib: only when a sweep ends

        try:
            self.written = report_stage.sweep_report(self.parent.tracker, parent_run_id, self.report, status)
        except Exception as error:  # noqa: BLE001 - named in one line; the summary stands
            log.warning("sweep report failed (%s: %s); build it later with python -m pipeline.report "
                        "sweep_id=%s", type(error).__name__, error, parent_run_id[:8])


def swept(overrides: list[str], sweeper_params: Any) -> dict[str, str]:
    """{key: sweep expression} for every override that varies across jobs: ``a=1,2`` on the
    command line, or the sweeper's ``params`` (Optuna's search space)."""
    params = OmegaConf.to_container(sweeper_params) if isinstance(sweeper_params, DictConfig) else {}
    candidates = [*overrides, *(f"{k}={v}" for k, v in (params or {}).items())]
    out: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(candidates):
        if override.is_sweep_override():
            out[override.key_or_group] = override.input_line.partition("=")[2]
        else:  # a later plain value of the same key wins, as in Hydra's sweepers
            out.pop(override.key_or_group, None)
    return out


def resolved(config: DictConfig) -> dict[str, Any]:
    """The sweep-level config without ``hydra``, resolved where it can be (job-only values such
    as ``${hydra:runtime.output_dir}`` stay as written)."""
    return {str(k): _resolve(config, k) for k in config if k != "hydra"}


def _resolve(node: DictConfig | ListConfig, key: Any) -> Any:
    try:
        value = node[key]
    except Exception:  # noqa: BLE001 - unresolvable here: keep the interpolation text
        return OmegaConf.to_container(node, resolve=False)[key]
    if isinstance(value, DictConfig):
        return {str(k): _resolve(value, k) for k in value}
    if isinstance(value, ListConfig):
        return [_resolve(value, i) for i in range(len(value))]
    return value


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _stop_local_jobs(timeout_s: float = 30.0) -> None:
    """The jobs of a ``submitit_local`` sweep that stops early (Ctrl-C or SIGTERM to this process, a
    job that crashed): each is this process's child, a submitit controller that forwards SIGTERM
    to its job, which ends its run KILLED after its current step. Until 2026-12-03 they trained on
    after the sweep had ended, into runs it had marked KILLED. A job still starting ignores SIGTERM
    (submitit's handler until the job's run opens) and is killed after ``timeout_s``."""
    import psutil

    controllers = _job_processes("submitit.local._local")
    if not controllers:
        return
    print(f"stopping the sweep's {len(controllers)} running submitit_local job(s): each ends its run "
          "KILLED after its current step (Ctrl-C again to kill them now)", file=sys.stderr, flush=True)
    for process in controllers:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    try:
        _, alive = psutil.wait_procs(controllers, timeout=timeout_s)
    except KeyboardInterrupt:
        alive = controllers
    for process in alive:
        with contextlib.suppress(psutil.Error):
            for child in process.children(recursive=True):
                child.kill()
            process.kill()


def _job_processes(marker: str) -> list[psutil.Process]:
    """This process's descendants whose command line holds `marker` (a launcher's job processes)."""
    import psutil  # here: Hydra loads this callback in every job's process, which needs none of it

    def matches(process: psutil.Process) -> bool:
        try:
            return marker in " ".join(process.cmdline())
        except psutil.Error:  # it ended meanwhile
            return False

    return [p for p in psutil.Process().children(recursive=True) if matches(p)]


def _wait_for_runs_to_end(client: Any, info: SweepInfo, timeout_s: float) -> None:
    """Until no child run of the sweep is RUNNING, or `timeout_s` (a job that never ends its run is
    marked KILLED when the sweep closes); a second Ctrl-C ends the wait."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = child_runs(client, [info.experiment_id], info.parent_run_id)
        if not [run for run in runs if run.info.status == "RUNNING"]:
            return
        time.sleep(0.2)


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _chain_excepthook(callback: MLflowSweepCallback, traceback: bool) -> None:
    """Remember an interrupt (Ctrl-C, SIGTERM) that ends the sweep so the parent ends KILLED, and
    end with one line and exit 130, as a single run does (`traceback`: Python's traceback instead).
    The summary follows (atexit). Until 2026-12-03 a parallel sweep printed the traceback of
    wherever its launcher waited (joblib's result loop, submitit's wait)."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            previous(kind, value, tb)
            return
        callback._interrupted = True
        if traceback:
            previous(kind, value, tb)
            return
        print(stopped_line(value), file=sys.stderr, flush=True)
        sys.exit(EXIT_STOPPED)  # raised in an excepthook, SystemExit sets the exit status

    sys.excepthook = hook


def _report(parent: SweepParent, summary: SweepSummary, written: WrittenReport | None) -> None:
    info, tracker = parent.info, parent.tracker
    lines = [f"\nSweep {parent.name}: {summary.outcome}"]
    if summary.best_run_id:
        lines.append(f"  best by {parent.optimized_metric} ({parent.mode}): {summary.best_run_name} "
                     f"({summary.best_run_id}) = {summary.best_value:.4f}")
    if summary.registered_model:
        lines.append(f"  registered model: models:/{summary.registered_model} "
                     f"(models:/{summary.registered_model.rpartition('/')[0]}/latest)")
    lines += [f"  {failure}" for failure in summary.failures]
    if written is not None:
        lines.append(f"  report: {written.html}")
    lines.append(f"  parent run {info.parent_run_id}: {tracker.run_url()}")
    stream = sys.stderr if summary.n_failed else sys.stdout
    print("\n".join(lines) + "\n", file=stream, flush=True)
