"""A new local store is a copy of a pre-migrated template, equal to the store MLflow creates."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mlflow import MlflowClient

from glassworks.tracking.store import copy_store_template, local_tracking_uri, open_client, store_cache_dir


def _schema(database: Path) -> dict[str, list[str]]:
    """Each table's and index's DDL as a sorted list of lines: MLflow's own migrations write a
    table's CHECK constraints in a different order from one process to the next."""
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    return {name: sorted(line.strip().rstrip(",") for line in sql.splitlines()) for name, sql in rows}


def _rows(database: Path, table: str) -> list[tuple]:
    with sqlite3.connect(database) as db:
        return db.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608 - our own table names


def test_a_new_store_is_the_template_with_its_own_default_artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSWORKS_CACHE_DIR", str(tmp_path / "cache"))
    assert store_cache_dir() == tmp_path / "cache"
    # What MLflow makes by itself, without the template.
    MlflowClient(local_tracking_uri(tmp_path / "plain")).search_experiments()
    plain = tmp_path / "plain" / "mlflow.db"

    client = open_client(local_tracking_uri(tmp_path / "copied"))
    copied = tmp_path / "copied" / "mlflow.db"
    templates = list((tmp_path / "cache").glob("mlflow-*.db"))
    assert len(templates) == 1, "the template is made once, on the first new store"
    assert _schema(copied) == _schema(plain)
    assert _rows(copied, "alembic_version") == _rows(plain, "alembic_version")
    assert _rows(copied, "workspaces") == _rows(plain, "workspaces")
    (default,) = client.search_experiments()
    assert default.name == "Default"
    assert default.artifact_location == (tmp_path / "copied" / "artifacts" / "0").as_uri()

    # The copy is a working store: runs, metrics, and a second store from the same template.
    experiment = client.create_experiment("glassworks")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "test/acc", 0.98)
    assert client.get_run(run.info.run_id).data.metrics == {"test/acc": 0.98}
    other = open_client(local_tracking_uri(tmp_path / "second"))
    assert [e.name for e in other.search_experiments()] == ["Default"]
    assert list((tmp_path / "cache").glob("mlflow-*.db")) == templates
    assert not list(tmp_path.rglob("*.partial")), "no half-written store or template is left behind"


def test_an_existing_store_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSWORKS_CACHE_DIR", str(tmp_path / "cache"))
    client = open_client(local_tracking_uri(tmp_path / "store"))
    client.create_experiment("kept")
    again = open_client(local_tracking_uri(tmp_path / "store"))
    assert sorted(e.name for e in again.search_experiments()) == ["Default", "kept"]


def test_without_a_writable_cache_mlflow_creates_the_store(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("GLASSWORKS_CACHE_DIR", str(blocker / "glassworks"))
    assert copy_store_template(tmp_path / "direct" / "mlflow.db") is False
    client = open_client(local_tracking_uri(tmp_path / "store"))
    assert [e.name for e in client.search_experiments()] == ["Default"]
