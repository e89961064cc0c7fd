"""Scratch folders go with the command that made them, however it ends."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from glassworks.scratch import OWNER_LOCK, remove_abandoned, scratch_dir, scratch_session


@pytest.fixture
def tmpdir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    yield tmp_path
    tempfile.tempdir = None


def test_session_removes_everything_on_success_and_failure(tmpdir_env):
    with scratch_session() as root:
        inner = scratch_dir("explain")
        (inner / "a.txt").write_text("x")
        with scratch_session() as nested:  # a stage called by pipeline.run shares the folder
            assert nested == root
        assert inner.parent == root and inner.name.startswith("glassworks-explain-")
    assert list(tmpdir_env.iterdir()) == []
    with pytest.raises(RuntimeError):
        with scratch_session():
            scratch_dir("report")
            raise RuntimeError("boom")
    assert list(tmpdir_env.iterdir()) == []


def test_a_librarys_temp_files_go_into_the_session(tmpdir_env):
    with scratch_session() as root:
        library = Path(tempfile.mkdtemp())  # as MLflow's TempDir, torch's spawn error files
        assert library.parent == root
        child = subprocess.run([sys.executable, "-c", "import tempfile; print(tempfile.mkdtemp())"],
                               capture_output=True, text=True, check=True)  # a spawned DDP rank, say
        assert Path(child.stdout.strip()).parent == root
    assert tempfile.gettempdir() == str(tmpdir_env) and os.environ["TMPDIR"] == str(tmpdir_env)
    assert list(tmpdir_env.iterdir()) == []


def test_outside_a_session_it_is_a_plain_temp_folder(tmpdir_env):
    path = scratch_dir("model")
    assert path.parent == tmpdir_env and path.name.startswith("glassworks-model-")


# A command's session, in a process of its own: prints its folder, then waits for a line on stdin;
# with "fork", a child that inherits the lock (a DataLoader worker, say) outlives it by a line.
SESSION_SCRIPT = """
import os, sys, tempfile
from glassworks.scratch import scratch_dir, scratch_session
with scratch_session() as root:
    (scratch_dir("explain") / "model.bin").write_bytes(b"x" * 1000)
    tempfile.mkdtemp()  # a library's temp folder (MLflow's while it logs a model)
    if sys.argv[1] == "fork" and os.fork() == 0:
        sys.stdin.readline()
        os._exit(0)
    print(root, flush=True)
    sys.stdin.readline()
"""


def _start_session(tmp_path, mode: str = "plain") -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", SESSION_SCRIPT, mode], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return proc, Path(proc.stdout.readline().strip())


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_new_session_removes_the_folders_of_killed_commands_and_no_other(tmpdir_env):
    killed, killed_root = _start_session(tmpdir_env)
    running, running_root = _start_session(tmpdir_env)
    orphaned, orphaned_root = _start_session(tmpdir_env, "fork")  # its forked child outlives it
    stranger = tmpdir_env / "glassworks-model-abc"  # scratch_dir outside a session: the caller's
    stranger.mkdir()
    for proc in (killed, orphaned):
        proc.kill()  # SIGKILL: no finally, no atexit
        proc.wait()
    assert killed_root.is_dir() and (killed_root / OWNER_LOCK).is_file()

    with scratch_session() as root:
        assert not killed_root.exists()
        assert running_root.is_dir() and orphaned_root.is_dir() and stranger.is_dir()
        assert root.is_dir()
        assert remove_abandoned(tmpdir_env) == []  # this session's own folder is locked too

    running.communicate("\n")  # ends normally: removes its own folder
    assert running.returncode == 0 and not running_root.exists()
    orphaned.stdin.close()  # the forked child reads EOF and exits: now nobody holds the lock
    deadline = time.monotonic() + 30
    while orphaned_root.exists() and time.monotonic() < deadline:
        remove_abandoned()
        time.sleep(0.05)
    assert not orphaned_root.exists()
    assert sorted(p.name for p in tmpdir_env.iterdir()) == [stranger.name]
