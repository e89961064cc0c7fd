"""The suite's fork server runs ``python -m`` commands as a fresh interpreter would: same argv,
working directory, import path, environment, exit codes, tracebacks, atexit handlers and joined
threads, its own temp folder and random state; and it kills a command past its timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glassworks.testing.forkserver import ForkServer, eligible, extra_path
from tests.conftest import cli_env, fork_server

PROBE = '''
import atexit, json, os, sys, tempfile, threading, time
import numpy as np

def later():
    time.sleep(0.3)
    print("thread done", flush=True)

atexit.register(lambda: print("atexit ran", flush=True))
threading.Thread(target=later).start()
print(json.dumps({
    "argv": sys.argv, "cwd": os.getcwd(), "path0": sys.path[0], "name": __name__,
    "spec": __spec__.name, "env": os.environ.get("PROBE_VALUE"), "tmp": tempfile.gettempdir(),
    "stdin": sys.stdin.read(), "main_has_serve": hasattr(sys.modules["__main__"], "serve"),
    "numpy_draw": float(np.random.rand()),
}), flush=True)
print("to stderr", file=sys.stderr)
if "--fail" in sys.argv:
    raise ValueError("probe failed on purpose")
if "--sleep" in sys.argv:
    time.sleep(60)
sys.exit(int(os.environ.get("PROBE_EXIT", "0")))
'''


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    (tmp_path / "probe_mod.py").write_text(PROBE)
    (tmp_path / "tmp").mkdir()
    return tmp_path


def _fresh(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _probe_env(cwd: Path, **extra: str) -> dict[str, str]:
    return cli_env(cwd, {"PROBE_VALUE": "seen", "TMPDIR": str(cwd / "tmp"), **extra})


def _report(out: subprocess.CompletedProcess[str]) -> dict:
    lines = out.stdout.splitlines()
    report = json.loads(lines[0])
    report.pop("numpy_draw")
    return {"report": report, "rest": lines[1:], "stderr": out.stderr, "code": out.returncode}


def test_a_forked_command_matches_a_fresh_interpreter(probe_dir):
    server = fork_server()
    if server is None:
        pytest.skip("GLASSWORKS_TEST_FORKSERVER=0")
    env = _probe_env(probe_dir, PROBE_EXIT="3")
    assert server.accepts(env)
    # sklearn and joblib setdefault these when the server imports them; a test process that has
    # imported them too (its environment then holds them) still forks. (A server started by a
    # process that had imported sklearn already has it in its environment: nothing set at import.)
    if "KMP_DUPLICATE_LIB_OK" not in server.env:
        assert server.set_at_import.get("KMP_DUPLICATE_LIB_OK") == "True"
    assert server.accepts({**env, **server.set_at_import})
    forked = server.run(["probe_mod", "a", "b=1"], cwd=probe_dir, env=env, timeout=120)
    fresh = _fresh(["probe_mod", "a", "b=1"], probe_dir, env)
    assert _report(forked) == _report(fresh)
    got = _report(forked)
    assert got["code"] == 3 and got["rest"] == ["thread done", "atexit ran"] and got["stderr"] == "to stderr\n"
    assert got["report"]["argv"] == [str(probe_dir / "probe_mod.py"), "a", "b=1"]
    assert got["report"]["cwd"] == got["report"]["path0"] == str(probe_dir)
    assert got["report"]["env"] == "seen" and got["report"]["tmp"] == str(probe_dir / "tmp")
    assert got["report"]["name"] == "__main__" and got["report"]["spec"] == "probe_mod"
    assert got["report"]["stdin"] == "" and got["report"]["main_has_serve"] is False


def test_a_package_sees_dash_m_as_argv0_while_it_is_imported(probe_dir):
    # pipeline/__init__.py reads it: `python -m pipeline.<entry>` imports without the collector.
    server = fork_server()
    if server is None:
        pytest.skip("GLASSWORKS_TEST_FORKSERVER=0")
    package = probe_dir / "probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("import sys\nARGV_AT_IMPORT = list(sys.argv)\n")
    (package / "entry.py").write_text("import json, sys\nfrom probe_pkg import ARGV_AT_IMPORT\n"
                                      "print(json.dumps([ARGV_AT_IMPORT, sys.argv]))\n")
    env = _probe_env(probe_dir)
    forked = server.run(["probe_pkg.entry", "x=1"], cwd=probe_dir, env=env, timeout=120)
    fresh = _fresh(["probe_pkg.entry", "x=1"], probe_dir, env)
    assert forked.stdout == fresh.stdout
    assert json.loads(forked.stdout) == [["-m", "x=1"], [str(package / "entry.py"), "x=1"]]


def test_an_uncaught_exception_exits_1_with_its_traceback(probe_dir):
    server = fork_server()
    if server is None:
        pytest.skip("GLASSWORKS_TEST_FORKSERVER=0")
    env = _probe_env(probe_dir)
    forked = server.run(["probe_mod", "--fail"], cwd=probe_dir, env=env, timeout=120)
    fresh = _fresh(["probe_mod", "--fail"], probe_dir, env)
    assert forked.returncode == fresh.returncode == 1
    assert forked.stderr.splitlines()[-1] == fresh.stderr.splitlines()[-1] == "ValueError: probe failed on purpose"
    assert "Traceback (most recent call last)" in forked.stderr


def test_children_draw_their_own_random_numbers(probe_dir):
    server = fork_server()
    if server is None:
        pytest.skip("GLASSWORKS_TEST_FORKSERVER=0")
    env = _probe_env(probe_dir)
    draws = {json.loads(server.run(["probe_mod"], cwd=probe_dir, env=env, timeout=120).stdout.splitlines()[0])["numpy_draw"]
             for _ in range(2)}
    assert len(draws) == 2


def test_a_command_past_its_timeout_is_killed(probe_dir):
    server = fork_server()
    if server is None:
        pytest.skip("GLASSWORKS_TEST_FORKSERVER=0")
    with pytest.raises(subprocess.TimeoutExpired) as expired:
        server.run(["probe_mod", "--sleep"], cwd=probe_dir, env=_probe_env(probe_dir), timeout=5)
    assert '"env": "seen"' in expired.value.output
    # the server is still usable
    assert server.run(["probe_mod"], cwd=probe_dir, env=_probe_env(probe_dir), timeout=120).returncode == 0


def test_a_sitecustomize_before_the_servers_path_runs_at_start_up(probe_dir, tmp_path_factory):
    """tests/faults works this way: PYTHONPATH=<folder with sitecustomize.py>:<the usual>."""
    server = fork_server()
    if server is None:
        pytest.skip("GLASSWORKS_TEST_FORKSERVER=0")
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text("import os\nos.environ['PROBE_VALUE'] = 'from sitecustomize'\n")
    env = cli_env(probe_dir, {"PYTHONPATH": str(site), "TMPDIR": str(probe_dir / "tmp")})
    assert extra_path(env, server.env, server.set_at_import) == [str(site)]
    forked = server.run(["probe_mod"], cwd=probe_dir, env=env, timeout=120)
    fresh = _fresh(["probe_mod"], probe_dir, env)
    assert _report(forked) == _report(fresh)
    assert _report(forked)["report"]["env"] == "from sitecustomize"


def test_import_time_variables_need_a_fresh_interpreter():
    base = {"PATH": "/usr/bin", "PYTHONPATH": "/a", "OMP_NUM_THREADS": "1", "GLASSWORKS_ROOT": "/x"}
    assert eligible({**base, "GLASSWORKS_ROOT": "/y", "MLFLOW_X": "1"}, base)
    assert extra_path({**base, "PYTHONPATH": "/faults:/a"}, base) == ["/faults"]
    assert extra_path(base, base) == []
    assert not eligible({**base, "PYTHONPATH": "/a:/faults"}, base)
    assert not eligible({**base, "PYTHONPATH": ""}, base)
    assert not eligible({**base, "OMP_NUM_THREADS": "2"}, base)
    assert not eligible({**base, "HF_HUB_OFFLINE": "1"}, base)
    assert not eligible({k: v for k, v in base.items() if k != "OMP_NUM_THREADS"}, base)
    # What an import sets for itself (sklearn: KMP_DUPLICATE_LIB_OK=True) matches its absence.
    imports = {"KMP_DUPLICATE_LIB_OK": "True"}
    assert eligible({**base, "KMP_DUPLICATE_LIB_OK": "True"}, base, imports)
    assert eligible(base, {**base, "KMP_DUPLICATE_LIB_OK": "True"}, imports)
    assert not eligible({**base, "KMP_DUPLICATE_LIB_OK": "False"}, base, imports)
    assert not eligible({**base, "KMP_DUPLICATE_LIB_OK": "True"}, base)
    assert os.environ.get("OMP_NUM_THREADS") == "1"  # what the suite's server starts with


def test_a_started_command_takes_signals_like_popen(probe_dir):
    """server.popen is what tests that signal a running command use (tests.conftest.start_cli)."""
    server = fork_server()
    if server is None:
        pytest.skip("GLASSWORKS_TEST_FORKSERVER=0")
    log = probe_dir / "probe.log"
    proc = server.popen(["probe_mod", "--sleep"], cwd=probe_dir, env=_probe_env(probe_dir), stdout=log)
    with open(log.with_suffix(".fresh"), "w") as out:
        fresh = subprocess.Popen([sys.executable, "-m", "probe_mod", "--sleep"], cwd=probe_dir,
                                 env=_probe_env(probe_dir), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not all(f.exists() and "to stderr" in f.read_text() for f in (log, log.with_suffix(".fresh"))):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert proc.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
        for p in (proc, fresh):
            p.send_signal(15)
        assert proc.wait(timeout=60) == fresh.wait(timeout=60) == -15
        assert proc.poll() == proc.returncode == -15
    finally:
        for p in (proc, fresh):
            if p.poll() is None:
                p.kill()
    # stdout and stderr in one file, as stderr=subprocess.STDOUT
    assert "to stderr" in log.read_text() and '"env": "seen"' in log.read_text()


def test_attaching_to_a_server_that_never_listens_fails_with_its_log(tmp_path):
    (tmp_path / "server.log").write_text("ImportError: no module named torch\n")
    client = ForkServer.attach(tmp_path, start_timeout=0.5)
    with pytest.raises(RuntimeError, match=r"did not start within 0 s: ImportError: no module named torch"):
        client.accepts(dict(os.environ))
    client.close()  # a client never removes the owner's folder
    assert (tmp_path / "server.log").is_file()
