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
