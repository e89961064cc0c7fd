"""System metrics, on once (every other test turns them off): a run with them on gets real
CPU and memory figures under system/, and a resumed run continues their step count."""

from __future__ import annotations

import time

import psutil
from mlflow import MlflowClient

from glassworks.tracking.tracker import MLflowTracker


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sum(i * i for i in range(10_000))


def test_system_metrics_are_logged_with_plausible_values(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MLflowTracker(tracking_uri=uri, system_metrics=True, system_metrics_interval_s=0.5)
    run_id = tracker.start("system-metrics", {})
    _busy(2.5)
    tracker.end("FINISHED")

    client = MlflowClient(uri)
    metrics = client.get_run(run_id).data.metrics
    cpu = client.get_metric_history(run_id, "system/cpu_utilization_percentage")
    memory = client.get_metric_history(run_id, "system/system_memory_usage_megabytes")
    assert len(cpu) >= 2 and len(memory) >= 2, sorted(metrics)
    assert [p.step for p in cpu] == list(range(len(cpu)))  # one point per sample, in order
    assert all(0 <= p.value <= 100 for p in cpu) and max(p.value for p in cpu) > 0
    total_mb = psutil.virtual_memory().total / 2**20
    assert all(0 < p.value <= total_mb for p in memory)
    assert 0 < metrics["system/system_memory_usage_percentage"] <= 100
    assert not [k for k in metrics if not k.startswith("system/")], "nothing else was logged"

    # a later stage in the same run continues the steps instead of writing over steps 0, 1, ...
    later = MLflowTracker(tracking_uri=uri, system_metrics=True, system_metrics_interval_s=0.5)
    later.attach(run_id)
    _busy(1.5)
    later.end("FINISHED")
    steps = [p.step for p in client.get_metric_history(run_id, "system/cpu_utilization_percentage")]
    assert len(steps) > len(cpu) and sorted(steps) == list(range(len(steps))), steps
