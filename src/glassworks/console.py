"""What the console shows: the project's own progress and real warnings, not its dependencies' chatter.

Each silenced message is matched by its text and the module that emits it, so a new warning of
the same library still shows. Our own noise is fixed where it is made instead (e.g. the MLflow
dataset schema hint in :mod:`glassworks.tracking.dataset`, the robustness baseline's stability).
Called once per process by the entry points (``pipeline/__init__.py``), before anything else loads.
"""

from __future__ import annotations

import logging
import os
import warnings

# (message regex, category, module regex) of dependency warnings every default run would print.
_DEPENDENCY_WARNINGS = (
    # torch 2.13 deprecated LeafSpec; Lightning 2.6 still builds one for every batch it moves.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"pytorch_lightning\.utilities\._pytree"),
    # Every run resumed mid-epoch: Lightning cannot see that the loader resumes, because the
    # position lives in the DataModule's state (glassworks.data.sampler.ResumableTrainOrder, mixed
    # into every DataModule; tested exact). The warning said "unreliable results" of a resume that is exact.
    (r"You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable",
     UserWarning, r"pytorch_lightning\.loops\.training_epoch_loop"),
    # One warning per missing glyph per figure when a token is CJK or emoji and the machine has no
    # font for it (matplotlib draws a box); real text makes dozens, the figure is still right.
    (r"Glyph \d+ .* missing from font", UserWarning, r"glassworks\..*|matplotlib\..*"),
    # conf/hydra/launcher/submitit_slurm.yaml sets our defaults over hydra-submitit-launcher's config
    # of the same name, which Hydra validates it against (as wanted) and calls deprecated, at every
    # start of the sweep and of each job. (The warning's location is wherever Hydra was entered.)
    (r"\s*'hydra/launcher/submitit_slurm' is validated against ConfigStore schema with the same name",
     UserWarning, ""),
)
# The devices every Trainer lists; the train stage's second Trainer (the test one) printed them again.
_LIGHTNING_DEVICE_LINES = ("GPU available:", "TPU available:", "HPU available:")
_LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")
# logger -> prefixes of the INFO lines it logs in every default run that say nothing a user acts on:
# Lightning's advertisements for its cloud products (on every Trainer), its note that the train
# stage's learning-rate schedule asked for the number of steps, and that a machine has no TPU or
# HPU (the GPU line stays: it says where the run trains); MLflow validating the model's input
# example against a signature built from that same example; the system-metrics monitor announcing
# its start and stop, and that a machine without a GPU has no GPU metrics. Lightning's "Detected
# KeyboardInterrupt" after the train stage stopped a fit on SIGTERM or a preemption (our own
# KeyboardInterrupt): the lines before it name the signal, the run's KILLED line how to continue.
_LIGHTNING_DROPPED = ("\N{ELECTRIC LIGHT BULB} Tip:",
                      "Loading `train_dataloader` to estimate number of stepping batches",
                      "TPU available: False", "HPU available: False",
                      "\nDetected KeyboardInterrupt, attempting graceful")
_DROPPED_LOG_LINES: dict[str, tuple[str, ...]] = {
    **{name: _LIGHTNING_DROPPED for name in _LIGHTNING_LOGGERS},
    "mlflow.pyfunc": ("Validating input example against model signature",),
    "mlflow.system_metrics.system_metrics_monitor": (
        "Started monitoring system metrics", "Stopping system metrics monitoring",
        "Successfully terminated system metrics monitoring", "Skip logging GPU metrics"),
}


class _DropPrefixes(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


class _DropRepeats(logging.Filter):
    """Lets a message that starts with one of ``prefixes`` through the first time only."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.prefixes):
            return True
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def quiet_dependencies() -> None:
    """Silence the dependency output a default run always prints; idempotent."""
    # MLflow draws a progress bar per artifact download (dozens per stage); a user's own setting wins.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for message, category, module in _DEPENDENCY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name, prefixes in _DROPPED_LOG_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefixes) for f in logger.filters):
            logger.addFilter(_DropPrefixes(prefixes))
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropRepeats) for f in logger.filters):
            logger.addFilter(_DropRepeats(_LIGHTNING_DEVICE_LINES))


# Hydra ends every error it reports itself (a misspelled group option, a malformed override) with
# this line; the project's switch for full tracebacks is debug=traceback, which sets it for Hydra.
HYDRA_HINT = "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."
OUR_HINT = "Add debug=traceback to the command for the complete stack trace."
TRACEBACK_SWITCHES = ("debug=traceback", "traceback=true", "+traceback=true")


class _HintRewriter:
    """A write-through stderr that swaps Hydra's hint line for ours; everything else is untouched."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(text.replace(HYDRA_HINT, OUR_HINT))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def hydra_errors_point_to_debug_traceback(argv: list[str]) -> None:
    """``debug=traceback`` also shows the traceback of errors Hydra reports before our code runs
    (composition errors), and Hydra's own hint names that switch instead of HYDRA_FULL_ERROR=1."""
    import sys

    if any(arg in TRACEBACK_SWITCHES for arg in argv[1:]):
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    if not isinstance(sys.stderr, _HintRewriter):
        sys.stderr = _HintRewriter(sys.stderr)
