"""``hydra/launcher=submitit_local``: a sweep through submitit's local executor (the pickling, job
folders and shared sweep directory of ``submitit_slurm``, without a cluster), with the sweep's
parent run and a child per job as with any launcher."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from tests.conftest import TINY, run_cli

pytestmark = pytest.mark.slow


def test_submitit_local_sweep_has_parent_and_children(tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = run_cli("pipeline.train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                     f"hydra.sweep.dir={sweep_dir}", *TINY, "trainer.max_epochs=1",
                     "data.source.n_train=200", "seed=0,1", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("glassworks.sweep_role") == "parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2 and len(runs) == 3
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert parents[0].data.tags["glassworks.sweep.launcher"] == "submitit_local"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all("test/acc" in c.data.metrics for c in children)
    # Each job went through submitit: pickled, run in its own process, its result written back.
    job_folders = [p for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and p.name.isdigit()]
    assert len(job_folders) == 2
    assert all(list(folder.glob("*_result.pkl")) for folder in job_folders)
