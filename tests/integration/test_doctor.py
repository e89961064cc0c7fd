"""pipeline.doctor finds runs a SIGKILL left RUNNING and orphaned artifact folders."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import pytest
from mlflow import MlflowClient

from glassworks.scratch import OWNER_LOCK
from glassworks.tracking.store import ensure_experiment, local_tracking_uri

if sys.platform != "win32":
    import fcntl
from pipeline.doctor import main


def test_doctor_marks_abandoned_runs_killed_and_lists_orphans(tmp_path, capsys):
    store = tmp_path / "mlruns"
    store.mkdir()
    client = MlflowClient(local_tracking_uri(store))
    exp = ensure_experiment(client, "glassworks", store)
    old = client.create_run(exp, start_time=int((time.time() - 3600) * 1000), run_name="dead")
    fresh = client.create_run(exp, run_name="alive")
    orphan = store / "artifacts" / ("f" * 32)
    orphan.mkdir(parents=True)

    assert main(["--dry-run", "--store-dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"would mark KILLED: {old.info.run_id}" in out and fresh.info.run_id not in out
    assert str(orphan) in out
    assert client.get_run(old.info.run_id).info.status == "RUNNING"

    assert main(["--store-dir", str(store)]) == 0
    assert client.get_run(old.info.run_id).info.status == "KILLED"
    assert client.get_run(fresh.info.run_id).info.status == "RUNNING"


def test_doctor_unreachable_store_is_one_message(tmp_path, capsys):
    assert main(["--tracking-uri", "http://127.0.0.1:9/", "--store-dir", str(tmp_path)]) == 2
    assert "cannot open the tracking store" in capsys.readouterr().err


def test_doctor_cleans_orphaned_artifacts_after_a_dry_run(tmp_path, capsys):
    store = tmp_path / "mlruns"
    store.mkdir()
    client = MlflowClient(local_tracking_uri(store))
    exp = ensure_experiment(client, "glassworks", store)
    kept = client.create_run(exp, run_name="kept")
    kept_dir = store / "artifacts" / kept.info.run_id
    kept_dir.mkdir(parents=True)
    orphan = store / "artifacts" / ("e" * 32)
    (orphan / "model").mkdir(parents=True)
    (orphan / "model" / "weights.pt").write_bytes(b"x" * 2048)

    assert main(["--store-dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"{orphan} (2.0 KB)" in out and "--clean-orphans" in out
    assert orphan.is_dir()

    assert main(["--clean-orphans", "--dry-run", "--store-dir", str(store)]) == 0
    assert "would delete 1 orphaned folder(s)" in capsys.readouterr().out
    assert orphan.is_dir()

    assert main(["--clean-orphans", "--store-dir", str(store)]) == 0
    assert "deleted 1 orphaned folder(s), 2.0 KB freed" in capsys.readouterr().out
    assert not orphan.exists() and kept_dir.is_dir()
    assert main(["--store-dir", str(store)]) == 0
    assert "no orphaned artifact folders" in capsys.readouterr().out


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_doctor_deletes_the_temp_folders_of_killed_commands(tmp_path, capsys, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    store = tmp_path / "mlruns"
    store.mkdir()
    MlflowClient(local_tracking_uri(store)).search_experiments()

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(gone.stdout)  # a process that ended: its pid runs nothing now
    killed = temp / f"glassworks-{dead_pid}-aaaa"  # a killed session: its lock file, unlocked
    (killed / "glassworks-explain-x").mkdir(parents=True)
    (killed / OWNER_LOCK).write_text("")
    (killed / "glassworks-explain-x" / "model.bin").write_bytes(b"x" * 4096)
    legacy = temp / f"glassworks-{dead_pid}-bbbb"  # made before sessions locked their folder
    legacy.mkdir()
    running = temp / f"glassworks-{os.getpid()}-cccc"  # a live session: its lock held
    running.mkdir()
    (running / OWNER_LOCK).write_text("")
    being_made = temp / f"glassworks-{os.getpid()}-dddd"  # no lock yet, its pid alive
    being_made.mkdir()
    fd = os.open(running / OWNER_LOCK, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert main(["--dry-run", "--store-dir", str(store)]) == 0
        out = capsys.readouterr().out
        assert f"temp folder of a killed command: {killed} (4.0 KB)" in out
        assert f"temp folder of a killed command: {legacy} (0 B)" in out
        assert str(running) not in out and str(being_made) not in out
        assert "would delete 2 temp folder(s)" in out and killed.is_dir() and legacy.is_dir()

        assert main(["--store-dir", str(store)]) == 0
        assert "deleted 2 temp folder(s), 4.0 KB freed" in capsys.readouterr().out
        assert sorted(p.name for p in temp.iterdir()) == [running.name, being_made.name]
    finally:
        os.close(fd)
