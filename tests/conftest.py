"""Shared fixtures: real Hydra composition at tiny size, a temp sqlite MLflow store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from typing import Any

import pytest
from omegaconf import DictConfig

from pipeline.compose import config_at  # importing pipeline registers the config resolvers
from glassworks.testing.forkserver import ForkedProcess, ForkServer

ROOT = Path(__file__).resolve().parents[1]
# The system temp folder, for what must be outside pytest's private (0700) temp root (PostgreSQL's
# data, which runs as the postgres user); read before _library_temp_files_under_basetemp.
SYSTEM_TEMP = tempfile.gettempdir()

# Tiny and fast: a few hundred synthetic examples, two epochs, no progress bar or system metrics.
TINY = [
    "data.source.n_train=400",
    "data.source.n_validation=100",
    "data.source.n_test=100",
    "data.batch_size=32",
    "trainer.max_epochs=2",
    "trainer=cpu",
    "callbacks.rich_progress_bar=null",
    "logger.system_metrics=false",
]

# The environment of every `mlflow server` the tests start. MLflow 3's job execution (GenAI jobs
# and trace roll-ups, which no test here uses) starts 7 huey consumer processes per server: a
# server's processes then took 31-37 s of CPU to start instead of 8-10 s (2 cores).
# scripts/tracking_server.sh turns it off the same way for its server.
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def pytest_configure(config):
    """Every process the suite starts (entry points, sweeps, servers, torchrun) inherits one
    intra-op thread. Two xdist workers each running a pipeline with torch's default of one thread
    per core oversubscribe 2 cores, and OpenMP's barrier then waits on a descheduled thread: a
    default-size training ran at 3 it/s instead of 35 next to one other busy process. A test (or
    CI) that exports its own OMP_NUM_THREADS keeps it. Here, not at import: only a pytest run sets
    it, never a process that merely imports this module (the benchmarks compose through
    pipeline.compose and keep torch's default for what they time)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        # A process that runs tests (an xdist worker, or pytest without -n): tiny models run as
        # fast on one thread as on two, and one is immune to oversubscription on busy CI cores.
        # Not in xdist's controller, which starts the workers only once it has loaded this file
        # (importing torch there cost every run of the suite ~2 s before its first test).
        import torch

        torch.set_num_threads(1)
    else:
        # pytest-xdist's controller: one fork server for all workers, started now (its ~15 s of
        # imports and kernel compilation overlap the first tests); the workers attach to it
        # through the environment they inherit.
        server = fork_server()
        if server is not None:
            server.start(wait=False)
            os.environ[SHARED_FORK_SERVER] = server.directory


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files that hold a real-training test (marked ``slow``) run first, every other file after
    them; within each group, and within a file, collection order is kept.

    ``scripts/test.sh`` runs ``-n 2 --dist loadfile --no-loadscope-reorder``: a worker takes a
    whole file at a time, in this order. The long subprocess files are then spread over both
    workers from the start and the many short unit files fill the end, instead of one worker
    finishing a minute-long kill/resume file alone while the other idles (xdist's default
    reorder, by number of tests, puts exactly those few-test files last)."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: False (slow) first


@pytest.fixture(scope="session", autouse=True)
def _library_temp_files_under_basetemp(tmp_path_factory):
    """Library calls that a test makes in its own process, outside a command's scratch session
    (a stage, logging a model), leave their scratch folders to the caller (glassworks.scratch):
    they go under pytest's temp root, which pytest prunes, not into the system temp folder
    (a suite run left ~19 folders there, a day of runs 427 MB). Commands (run_cli) are
    unaffected: their TMPDIR is the environment's, and each removes its own session folder."""
    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("tmp"))
    yield
    tempfile.tempdir = before


@pytest.fixture(autouse=True)
def _no_global_tracking_uri(monkeypatch):
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI to the process; one test's store must
    never become the next test's default."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def compose_config(tmp_path: Path, overrides: Sequence[str] = (), config_name: str = "train",
                   tiny: bool = True) -> DictConfig:
    """Compose the real config tree as Hydra's main would, rooted in ``tmp_path``; `tiny`: with
    the TINY overrides whose keys the config has."""
    tiny_overrides = [o for o in (TINY if tiny else []) if _applies(o, overrides)]
    return config_at(tmp_path, [*tiny_overrides, *overrides], config_name)


def _applies(tiny_override: str, overrides: Sequence[str]) -> bool:
    """A TINY override only applies where its key exists: not logger.* with logger=none, not
    data.source.n_* with data=files."""
    if tiny_override.startswith("logger.") and "logger=none" in overrides:
        return False
    if tiny_override.startswith("data.source.n_") and any(
            o.startswith("data=") and o != "data=synthetic" for o in overrides):
        return False
    if tiny_override.startswith("trainer=") and any(o.startswith("trainer=") for o in overrides):
        return False
    return True


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str, config_name: str = "train", tiny: bool = True) -> DictConfig:
        return compose_config(tmp_path, overrides, config_name, tiny)

    return make


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def pythonpath(*first: Path) -> str:
    """PYTHONPATH for a subprocess: ``first`` (e.g. tests/faults), then this checkout's src/ and
    root. src/ must come before any editable install of another checkout, or a CLI test would
    run that checkout's glassworks and a bug in this one would survive."""
    return os.pathsep.join(str(p) for p in (*first, ROOT / "src", ROOT))


def cli_env(cwd: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an entry point run from ``cwd``: its store and outputs land there.
    A ``PYTHONPATH`` in ``env`` goes before this checkout's (see :func:`pythonpath`)."""
    extra = dict(env or {})
    first = [Path(p) for p in extra.pop("PYTHONPATH", "").split(os.pathsep) if p]
    full_env = {**os.environ, "GLASSWORKS_ROOT": str(cwd), "PYTHONPATH": pythonpath(*first), **extra}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    return full_env


def imported_packages(env: dict[str, str], cwd: Path) -> dict[str, Path]:
    """Where a subprocess with ``env`` imports ``glassworks`` and ``pipeline`` from."""
    # find_spec names the file an import would run, without running it (a shadowing package need
    # not be importable for the check to report it).
    code = ("import importlib.util as u; print(u.find_spec('glassworks').origin); "
            "print(u.find_spec('pipeline').origin)")
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    glassworks_file, pipeline_file = out.stdout.split()
    return {"glassworks": Path(glassworks_file).resolve(), "pipeline": Path(pipeline_file).resolve()}


def assert_imports_this_checkout(env: dict[str, str], cwd: Path) -> None:
    where = imported_packages(env, cwd)
    expected = {"glassworks": ROOT / "src" / "glassworks" / "__init__.py", "pipeline": ROOT / "pipeline" / "__init__.py"}
    assert where == {k: v.resolve() for k, v in expected.items()}, (
        f"a CLI subprocess imports {where}, not this checkout ({ROOT})")


_checked_cli_env = False
_fork_server: ForkServer | None = None
# Set by the xdist controller (pytest_configure) to its fork server's folder, for the workers.
SHARED_FORK_SERVER = "GLASSWORKS_TEST_FORKSERVER_DIR"


def fork_server() -> ForkServer | None:
    """This test process's fork server (glassworks.testing.forkserver): under xdist the one the
    controller started, otherwise this process's own, started on first use. None when
    ``GLASSWORKS_TEST_FORKSERVER=0`` asks for a fresh interpreter per command."""
    global _fork_server
    if os.environ.get("GLASSWORKS_TEST_FORKSERVER", "1") == "0":
        return None
    if _fork_server is None:
        shared = os.environ.get(SHARED_FORK_SERVER)
        if shared:
            _fork_server = ForkServer.attach(shared)
        else:
            env = {**os.environ, "PYTHONPATH": pythonpath()}
            env.pop("MLFLOW_TRACKING_URI", None)
            _fork_server = ForkServer(env, cwd=ROOT)
    return _fork_server


def _server_for(full_env: dict[str, str], fresh: bool) -> ForkServer | None:
    """The fork server to run a command with ``full_env`` in, or None for a real interpreter."""
    server = None if fresh else fork_server()
    return server if server is not None and server.accepts(full_env) else None


def run_cli(module: str, *args: str, cwd: Path, timeout: int = 600,
            env: dict[str, str] | None = None, fresh: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a pipeline entry point as a user would, from ``cwd`` (its outputs land there).

    The command runs in a child of this process's fork server, which has imported torch,
    Lightning, MLflow and shap once (~10-15 s a command otherwise), set up as a fresh
    ``python -m`` process (a ``PYTHONPATH`` put before this checkout's, such as tests/faults,
    is honoured with its sitecustomize); ``fresh=True``, an environment that changes a variable
    read at import (thread counts, caches) or ``GLASSWORKS_TEST_FORKSERVER=0`` start a real
    interpreter instead. The server stops when the process that started it exits (under xdist,
    the controller).
    The first call in a process checks that a subprocess imports this checkout's code."""
    global _checked_cli_env
    full_env = cli_env(cwd, env)
    if not _checked_cli_env:
        assert_imports_this_checkout(full_env, cwd)
        _checked_cli_env = True
    server = _server_for(full_env, fresh)
    if server is not None:
        return server.run([module, *args], cwd=cwd, env=full_env, timeout=timeout)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def start_cli(module: str, *args: str, cwd: Path, log: Path, env: dict[str, str] | None = None,
              fresh: bool = False) -> ForkedProcess | subprocess.Popen[str]:
    """Start an entry point as :func:`run_cli` runs one, without waiting: stdout and stderr go
    to the file ``log``. Returns a Popen-like handle (``pid``, ``poll``, ``wait``,
    ``send_signal``, ``kill``, ``returncode``)."""
    full_env = cli_env(cwd, env)
    server = _server_for(full_env, fresh)
    if server is not None:
        return server.popen([module, *args], cwd=cwd, env=full_env, stdout=log)
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)


@contextlib.contextmanager
def mlflow_server(backend_uri: str, cwd: Path, log: Path, *args: str, timeout: float = 300) -> Iterator[str]:
    """An ``mlflow server`` on `backend_uri` (extra CLI `args`), bound to a free loopback port;
    yields its base URL once ``/health`` answers, and stops its process group on exit.

    `timeout` is generous: a loaded 2-core machine has needed ~45 s to start one. Its output goes
    to `log`, whose tail is the error when the server dies or never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, **SERVER_ENV,
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}"}
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri,
                                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *args],
                                  cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start on {base}: {log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker: the group we started
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def run_snapshot(client: Any, run_id: str) -> dict[str, Any]:
    """Everything a run recorded: params, every metric's whole history, tags, the artifact tree
    (path and size), status, start and end time (what "never rewritten" means, checkable)."""
    run = client.get_run(run_id)

    def tree(path: str | None = None) -> list[tuple[str, int | None]]:
        items = []
        for item in client.list_artifacts(run_id, path):
            items += tree(item.path) if item.is_dir else [(item.path, item.file_size)]
        return sorted(items)

    histories = {k: [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, k)]
                 for k in run.data.metrics}
    return {"params": dict(run.data.params), "histories": histories, "tags": dict(run.data.tags),
            "artifacts": tree(), "status": run.info.status, "start": run.info.start_time, "end": run.info.end_time}
