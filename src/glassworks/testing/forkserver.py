"""A fork server for the test suite's entry-point runs: ``python -m <module> args`` without paying
the imports every time.

A fresh ``python -m pipeline.run`` spends ~10 s importing torch, Lightning (which imports
torchmetrics and, through it, transformers, scipy and matplotlib), MLflow and Hydra, and its
explain stage ~5 s more compiling shap's numba kernels. The suite starts about a hundred such
commands. This server imports those libraries once and compiles the kernels, then forks one
child per command. The child is set up as the interpreter would set up a fresh process (its
working directory first on ``sys.path``, the request's environment, stdout/stderr into the
caller's files, stdin from /dev/null, a fresh ``__main__``, tempfile's cached folder and numpy's
global seed reset) and runs the module as ``python -m`` does (``runpy._run_module_as_main``).
It then leaves through the interpreter's normal exit: SystemExit codes, tracebacks, non-daemon
threads joined, atexit handlers (MLflow ends its runs there) and flushed streams, as a fresh
process would.

Only third-party libraries and shap's kernels are preloaded: glassworks and pipeline code is
imported by each child from the checkout, as in a fresh process. Requests whose environment
differs from the server's in a variable that libraries read when imported (thread counts, caches,
offline flags: see :data:`IMPORT_TIME_ENV`) are not eligible; :func:`eligible` says so and the
caller starts a real process instead. A ``PYTHONPATH`` that adds entries before the server's is
fine: the child puts them on ``sys.path`` and imports their ``sitecustomize`` as start-up would
(the fault-injection tests' ``tests/faults``).

Protocol, over a Unix socket: the client (:class:`ForkServer`: ``run`` as ``subprocess.run``,
``popen`` for a :class:`ForkedProcess` as ``subprocess.Popen``) sends one JSON request (argv, cwd,
env, stdout and stderr paths) and half-closes; the server answers ``<pid>\\n`` and, when the child ends,
``<wait status>\\n``. The server is single-threaded (forking a process that has other threads is
unsafe): it polls for requests and reaps children in one loop, and exits when its parent does.

Start it with ``python -m glassworks.testing.forkserver SOCKET``; it prints ``ready`` on stdout.
The test suite's client is :class:`ForkServer` (``tests/conftest.py`` ``run_cli``).
"""

from __future__ import annotations

import atexit
import gc
import importlib
import io
import json
import locale
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# Libraries the entry points import (python -X importtime: Lightning 5 s with torchmetrics,
# torch 3 s, MLflow 2 s, transformers, scipy, pandas, matplotlib ...), and shap for explain.
PRELOAD = (
    "torch", "pytorch_lightning", "torchmetrics", "transformers", "mlflow", "mlflow.pytorch",
    "mlflow.pyfunc", "mlflow.models", "mlflow.tracking", "hydra", "omegaconf", "pandas", "scipy",
    "sklearn", "matplotlib", "matplotlib.figure", "datasets", "tokenizers", "sqlalchemy", "alembic",
    "shap", "numba",
)

# Environment variables read when a preloaded library is imported (thread pools, caches,
# offline flags, the import path and sitecustomize): a request that changes one gets a fresh
# process. Prefix match.
IMPORT_TIME_ENV = ("PYTHON", "OMP_", "MKL_", "OPENBLAS_", "KMP_", "NUMBA_", "HF_", "HUGGINGFACE",
                   "TRANSFORMERS_", "TOKENIZERS_", "MPL", "TORCH", "CUDA", "LD_", "XDG_", "HOME",
                   "LANG", "LC_")


def _import_time_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(IMPORT_TIME_ENV)}


def extra_path(env: Mapping[str, str], server_env: Mapping[str, str],
               set_at_import: Mapping[str, str] | None = None) -> list[str] | None:
    """The import-path entries a process started with ``env`` puts before those of a server
    started with ``server_env`` (``PYTHONPATH=tests/faults:<the server's>``), or None when a
    forked child would not behave as that fresh process: they differ in another variable of
    :data:`IMPORT_TIME_ENV`, or ``env``'s PYTHONPATH does not end with the server's.

    ``set_at_import``: variables the preloaded libraries set for themselves when imported
    (sklearn and joblib ``setdefault`` KMP_DUPLICATE_LIB_OK and KMP_INIT_AT_FORK). A fresh process
    sets them the same way, so an environment without them, or with the same values, matches."""
    mine, server = _import_time_env(env), _import_time_env(server_env)
    for key, value in (set_at_import or {}).items():
        if mine.get(key, value) == value and server.get(key, value) == value:
            mine.pop(key, None)
            server.pop(key, None)
    path, server_path = mine.pop("PYTHONPATH", ""), server.pop("PYTHONPATH", "")
    if mine != server:
        return None
    entries, server_entries = path.split(os.pathsep) if path else [], server_path.split(os.pathsep) if server_path else []
    n = len(entries) - len(server_entries)
    if n < 0 or entries[n:] != server_entries:
        return None
    return entries[:n]


def eligible(env: Mapping[str, str], server_env: Mapping[str, str],
             set_at_import: Mapping[str, str] | None = None) -> bool:
    """Whether a child forked from a server started with ``server_env`` behaves as a fresh
    process started with ``env`` (see :func:`extra_path`)."""
    return extra_path(env, server_env, set_at_import) is not None


def _description_path(socket_path: str) -> str:
    """The server's environment and what its imports set, written before it listens."""
    return socket_path + ".json"


# ---- server ---------------------------------------------------------------------------------

def _preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    try:
        from glassworks.explain.shap_kernels import ALGORITHMS, compile_shap_kernels
    except ImportError:
        return
    compile_shap_kernels(ALGORITHMS)
    # Only shap's kernels: the children import glassworks themselves, from the checkout.
    for name in [m for m in sys.modules if m == "glassworks" or m.startswith("glassworks.")]:
        del sys.modules[name]


def _read_request(conn: socket.socket) -> dict | None:
    """The request, or None for a connection that sent nothing (an attached client's readiness probe)."""
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return json.loads(b"".join(chunks)) if chunks else None


def serve(path: str) -> dict:
    """Preload, listen on ``path``, fork a child per request. Returns only in a child, with its
    request (the parent loops until its own parent exits)."""
    before = dict(os.environ)
    _preload()
    # Into the permanent generation: a child's collections then never walk (and so never copy,
    # page by page, from the server's memory) the ~755 000 objects of the preloaded stack. A
    # trivial command took ~3 s in a child, ~0.7 s with this (its exit and its first collections
    # were writing to every inherited object).
    gc.collect()
    gc.freeze()
    set_at_import = {k: v for k, v in os.environ.items() if before.get(k) != v}
    Path(_description_path(path)).write_text(json.dumps({"env": before, "set_at_import": set_at_import}))
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)
    children: dict[int, socket.socket] = {}
    while True:
        readable, _, _ = select.select([listener], [], [], 0.05)
        if readable:
            conn, _ = listener.accept()
            request = _read_request(conn)
            if request is None:
                conn.close()
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                for other in children.values():
                    other.close()
                return request
            conn.sendall(f"{pid}\n".encode())
            children[pid] = conn
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(f"{status}\n".encode())
                except OSError:  # the client gave up on it
                    pass
                conn.close()
        if os.getppid() != parent:
            raise SystemExit(0)


def _become(request: dict) -> None:
    """Turn this forked child into ``python -m <argv[0]> argv[1:]`` started in the request's
    directory with its environment and output files."""
    import runpy
    import types

    argv, cwd = request["argv"], request["cwd"]
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.close(out)
    if request["stderr"] == request["stdout"]:  # stderr=STDOUT
        os.dup2(1, 2)
    else:
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(err, 2)
        os.close(err)
    os.close(null)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    sys.path[0] = os.getcwd()  # what `python -m` puts first
    extra = request.get("extra_path") or []
    if extra:
        # PYTHONPATH entries before the server's, and the sitecustomize the interpreter would
        # have imported from them at start-up (tests/faults injects its faults this way).
        sys.path[1:1] = extra
        sys.modules.pop("sitecustomize", None)
        importlib.invalidate_caches()
        try:
            importlib.import_module("sitecustomize")
        except ImportError:
            pass
    tempfile.tempdir = None  # recomputed from this environment's TMPDIR
    if "numpy" in sys.modules:  # `random` reseeds itself after fork; numpy's global state does not
        sys.modules["numpy"].random.seed()
    # What `python -m` does: argv[0] is "-m" while the module's package is imported (pipeline's
    # __init__ reads it), then runpy puts the module's path there.
    sys.argv = ["-m", *argv[1:]]
    sys.modules["__main__"] = types.ModuleType("__main__")
    runpy._run_module_as_main(argv[0], alter_argv=True)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m glassworks.testing.forkserver SOCKET")
    _become(serve(sys.argv[1]))


# ---- client ---------------------------------------------------------------------------------

class ForkServer:
    """A server process of this interpreter with ``env`` (started on the first :meth:`run`, or
    by :meth:`start`), or, from :meth:`attach`, a client of one that another process started."""

    def __init__(self, env: Mapping[str, str], cwd: str | Path, start_timeout: float = 300.0,
                 _attach_to: str | None = None):
        self.env = dict(env)  # an attached client learns it from the server when it is ready
        self.cwd = str(cwd)
        self.start_timeout = start_timeout
        self._owner = _attach_to is None
        self.directory = tempfile.mkdtemp(prefix="glassworks-forkserver-") if self._owner else _attach_to
        self.socket_path = os.path.join(self.directory, "socket")
        self._proc: subprocess.Popen[str] | None = None
        self._ready = False
        self.set_at_import: dict[str, str] = {}  # known once the server is ready
        if self._owner:
            atexit.register(self.close)  # the server and its folder go with this process

    @classmethod
    def attach(cls, directory: str | Path, start_timeout: float = 300.0) -> ForkServer:
        """A client of the server that :meth:`start` runs in ``directory`` (another process, e.g.
        pytest-xdist's controller, owns it): requests wait until it is ready; it is never
        restarted or stopped from here."""
        return cls({}, cwd="", start_timeout=start_timeout, _attach_to=str(directory))

    def start(self, wait: bool = True) -> None:
        """Start the server now; ``wait=False`` returns at once (the first request waits for it)."""
        os.makedirs(self.directory, exist_ok=True)
        if os.path.exists(self.socket_path):  # left by a server that died
            os.unlink(self.socket_path)
        self._ready = False
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "glassworks.testing.forkserver", self.socket_path], cwd=self.cwd,
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=open(os.path.join(self.directory, "server.log"), "w"), text=True)
        if wait:
            self._wait_ready()

    def _wait_ready(self) -> None:
        if self._ready:
            return
        deadline = time.monotonic() + self.start_timeout
        if self._owner:
            assert self._proc is not None
            ready, _, _ = select.select([self._proc.stdout], [], [], self.start_timeout)
            self._ready = (self._proc.stdout.readline() if ready else "").strip() == "ready"
        else:  # the owner's server listens once its imports are done
            while not self._ready and time.monotonic() < deadline:
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(self.socket_path)
                    probe.shutdown(socket.SHUT_WR)  # an empty request: the server just closes it
                    self._ready = True
                except OSError:
                    time.sleep(0.2)
                finally:
                    probe.close()
        if self._ready:
            description = json.loads(Path(_description_path(self.socket_path)).read_text())
            self.env, self.set_at_import = description["env"], description["set_at_import"]
        else:
            log_path = Path(self.directory, "server.log")
            log = log_path.read_text()[-3000:] if log_path.exists() else "(no log)"
            if self._owner:
                self.close()
            raise RuntimeError(f"fork server did not start within {self.start_timeout:.0f} s: {log}")

    def _ensure_ready(self) -> None:
        if self._owner and (self._proc is None or self._proc.poll() is not None):
            self.start(wait=False)
        self._wait_ready()

    def accepts(self, env: Mapping[str, str]) -> bool:
        """Whether a command with ``env`` can run here (see :func:`extra_path`); starts the server
        or waits for it, since what its imports set is part of the answer."""
        self._ensure_ready()
        return eligible(env, self.env, self.set_at_import)

    def popen(self, argv: Sequence[str], cwd: str | Path, env: Mapping[str, str], stdout: str | Path,
              stderr: str | Path | None = None) -> ForkedProcess:
        """Like ``subprocess.Popen([python, "-m", *argv], cwd=, env=)`` with stdout written to the
        file ``stdout`` and stderr to ``stderr`` (None: into stdout, as ``stderr=STDOUT``)."""
        self._ensure_ready()
        extra = extra_path(env, self.env, self.set_at_import)
        if extra is None:
            raise ValueError("ForkServer: this environment needs a fresh interpreter (see extra_path)")
        request = {"argv": list(argv), "cwd": str(cwd), "env": dict(env), "stdout": str(stdout),
                   "stderr": str(stderr if stderr is not None else stdout), "extra_path": extra}
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.socket_path)
            conn.sendall(json.dumps(request).encode())
            conn.shutdown(socket.SHUT_WR)
            replies = _Lines(conn)
            pid = int(replies.next(None))
        except BaseException:
            conn.close()
            raise
        return ForkedProcess([sys.executable, "-m", *argv], pid, conn, replies)

    def run(self, argv: Sequence[str], cwd: str | Path, env: Mapping[str, str],
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Like ``subprocess.run([python, "-m", *argv], cwd=, env=, capture_output=True,
        text=True, timeout=)``, by a child of the server."""
        with tempfile.TemporaryDirectory(dir=self.directory) as d:
            out, err = os.path.join(d, "stdout"), os.path.join(d, "stderr")
            proc = self.popen(argv, cwd, env, stdout=out, stderr=err)
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:  # kill it as subprocess.run does
                proc.kill()
                proc.wait()
                raise subprocess.TimeoutExpired(proc.args, timeout, _text(out), _text(err)) from None
            return subprocess.CompletedProcess(proc.args, code, _text(out), _text(err))

    def close(self) -> None:
        """Stop the server (its running children finish on their own) and remove its folder;
        nothing for an attached client (the owner does it)."""
        if not self._owner:
            return
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        self._ready = False
        shutil.rmtree(self.directory, ignore_errors=True)


class ForkedProcess:
    """A command running in a child of the fork server: the part of ``subprocess.Popen`` tests
    use (``pid``, ``poll``, ``wait``, ``send_signal``, ``terminate``, ``kill``, ``returncode``)."""

    def __init__(self, args: list[str], pid: int, conn: socket.socket, replies: _Lines):
        self.args, self.pid, self.returncode = args, pid, None
        self._conn, self._replies = conn, replies

    def _status(self, deadline: float | None) -> int | None:
        if self.returncode is None:
            line = self._replies.next(deadline)
            if line is not None:
                self.returncode = os.waitstatus_to_exitcode(int(line))
                self._conn.close()
        return self.returncode

    def poll(self) -> int | None:
        return self._status(time.monotonic())

    def wait(self, timeout: float | None = None) -> int:
        code = self._status(None if timeout is None else time.monotonic() + timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Lines:
    """The server's replies, a line at a time, each read with an optional deadline."""

    def __init__(self, conn: socket.socket):
        self.conn, self.buffer = conn, b""

    def next(self, deadline: float | None) -> str | None:
        """The next line; None past ``deadline`` (time.monotonic)."""
        while b"\n" not in self.buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.conn], [], [], wait)
            if not ready:
                return None
            chunk = self.conn.recv(4096)
            if not chunk:
                raise RuntimeError("the fork server closed the connection before the child's exit status")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def _text(path: str) -> str:
    """A file's bytes decoded as ``subprocess.run(text=True)`` decodes a pipe (universal newlines)."""
    data = Path(path).read_bytes() if os.path.exists(path) else b""
    return io.TextIOWrapper(io.BytesIO(data), encoding=locale.getpreferredencoding(False)).read()


if __name__ == "__main__":
    main()
