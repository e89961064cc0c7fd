"""pipeline.doctor finds runs a SIGKILL left RUNNING and orphaned artifact folders."""

from __future__ import annotations

import time

from mlflow import MlflowClient

from glassworks.tracking.store import ensure_experiment, local_tracking_uri
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
