"""The parts of exact resumption, each on its own: the data order, the RNG state, atomic
checkpoint files, and the metric points a resumed run skips."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric

from glassworks.data.sampler import EpochShuffleSampler
from glassworks.tracking.lightning_logger import MLflowRunLogger
from glassworks.tracking.tracker import MLflowTracker
from glassworks.training.checkpoint_io import (AtomicCheckpointIO, CheckpointWriteError, on_accelerator,
                                                 remove_partial_writes)
from glassworks.training.resume import ResumeCheckpoint, capture_rng, restore_rng
from glassworks.validation import ConfigError


def test_epoch_order_is_a_function_of_seed_and_epoch():
    data = list(range(50))
    sampler = EpochShuffleSampler(data, seed=3)
    epoch0 = list(sampler)
    assert list(sampler) == epoch0 and sorted(epoch0) == data  # iterating again: same order
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0 and sorted(epoch1) == data
    fresh = EpochShuffleSampler(data, seed=3)
    fresh.set_epoch(1)  # a resumed run gets epoch 1's order without replaying epoch 0
    assert list(fresh) == epoch1
    assert list(EpochShuffleSampler(data, seed=4)) != epoch0


def test_ddp_ranks_share_the_epoch_order_and_resume_their_own_share():
    data = list(range(11))
    whole = EpochShuffleSampler(data, seed=3)
    whole.set_epoch(2)
    order = list(whole)
    ranks = [EpochShuffleSampler(data, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(2)
    shares = [list(sampler) for sampler in ranks]
    padded = order + order[:1]  # 11 examples on 2 ranks: 12, the first repeated (torch's padding)
    assert shares == [padded[0::2], padded[1::2]] and [len(s) for s in ranks] == [6, 6]
    ranks[1].resume_at(epoch=2, n_seen=4)  # rank 1 had trained on 4 of its examples
    assert list(ranks[1]) == shares[1][4:]
    # A DistributedSampler: Lightning keeps it instead of putting its own (positionless) one in.
    assert isinstance(ranks[0], torch.utils.data.DistributedSampler)


def test_resumed_epoch_skips_what_was_seen_once():
    data = list(range(20))
    sampler = EpochShuffleSampler(data, seed=0)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.resume_at(epoch=2, n_seen=8)
    assert list(sampler) == full[8:]
    assert list(sampler) == full  # the next epoch-2 pass is whole again
    sampler.resume_at(epoch=1, n_seen=8)  # a position in another epoch is not applied
    assert list(sampler) == full
    assert len(sampler) == 20


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = capture_rng()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    path = tmp_path / "rng.pt"
    torch.save({"rng": state}, path)
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_rng(torch.load(path, weights_only=True)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


class _Unpicklable:
    def __reduce__(self):
        raise RuntimeError("write interrupted")


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
    io = AtomicCheckpointIO(asynchronous=False)
    path = tmp_path / "ckpts" / "resume.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, path)
    with pytest.raises(RuntimeError, match="write interrupted"):
        io.save_checkpoint({"step": torch.tensor(2), "x": _Unpicklable()}, path)
    assert int(torch.load(path, weights_only=True)["step"]) == 1
    assert [p.name for p in path.parent.iterdir()] == ["resume.ckpt"]  # no temporary file left
    leftover = path.parent / ".resume.ckpt.123.tmp"  # what a SIGKILL mid-write leaves
    leftover.write_bytes(b"PK\x03\x04 truncated")
    assert remove_partial_writes(path.parent) == [leftover] and not leftover.exists()


def test_a_write_off_the_training_thread_saves_the_state_it_was_given(tmp_path):
    io = AtomicCheckpointIO(asynchronous=True, max_pending=2)
    weight = torch.zeros(1000)
    paths = [tmp_path / "ckpts" / f"{name}.ckpt" for name in ("best", "last", "resume")]
    for step, path in enumerate(paths, start=1):
        weight += 1  # what the next optimizer step does, in place, while earlier writes may still run
        io.save_checkpoint({"state_dict": {"w": weight}, "global_step": step}, path)
        assert path.parent.is_dir()  # at once: Lightning may link last.ckpt to the file before it lands
    io.save_checkpoint({"state_dict": {"w": weight + 1}, "global_step": 4}, paths[2])  # resume.ckpt again
    assert len(io._pending) <= 2  # the third save waited for the oldest write
    io.remove_checkpoint(paths[0])  # waits for its write first: nothing comes back afterwards
    assert io.load_checkpoint(paths[2], weights_only=True)["global_step"] == 4  # loading waits too
    io.teardown()
    assert not paths[0].exists()
    last = torch.load(paths[1], weights_only=True)
    assert last["global_step"] == 2 and torch.equal(last["state_dict"]["w"], torch.full((1000,), 2.0))
    assert torch.equal(torch.load(paths[2], weights_only=True)["state_dict"]["w"], torch.full((1000,), 4.0))
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["last.ckpt", "resume.ckpt"]


def test_a_failed_write_off_the_training_thread_raises_at_the_next_save_naming_the_file(tmp_path):
    io = AtomicCheckpointIO(asynchronous=True)
    path = tmp_path / "resume.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, path)
    io.save_checkpoint({"step": torch.tensor(2), "x": _Unpicklable()}, path)
    with pytest.raises(CheckpointWriteError, match=f"writing checkpoint {path} failed: write interrupted"):
        io.wait()
    assert int(torch.load(path, weights_only=True)["step"]) == 1  # the previous one, whole
    io.save_checkpoint({"step": torch.tensor(3)}, path)  # the failure was reported once
    io.teardown()
    assert int(torch.load(path, weights_only=True)["step"]) == 3
    with pytest.raises(ConfigError, match="max_pending"):
        AtomicCheckpointIO(max_pending=0)
    with pytest.raises(ConfigError, match="asynchronous: must be true, false or auto, got 'yes'"):
        AtomicCheckpointIO(asynchronous="yes")


def test_auto_writes_off_the_training_thread_only_for_weights_on_an_accelerator():
    # On the CPU the writer thread takes the training's own cores (no gain measured on 2 cores).
    assert not on_accelerator({"state_dict": {"w": torch.zeros(2)}, "global_step": 1})
    assert on_accelerator({"state_dict": {"w": torch.zeros(2, device="meta")}})
    assert not on_accelerator({"global_step": 1})


def test_resume_checkpoint_rejects_a_bad_interval(tmp_path):
    with pytest.raises(ConfigError, match="every_n_train_steps"):
        ResumeCheckpoint(str(tmp_path), every_n_train_steps=0)


def test_a_resumed_run_logs_each_step_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = MLflowTracker(tracking_uri=uri, system_metrics=False)
    run_id = first.start("killed", {})
    first.log_metric_batch([Metric("train/loss", 1.0 - s / 10, 0, s) for s in range(5)])
    first.end("KILLED", KeyboardInterrupt("received SIGTERM"), "train")

    second = MLflowTracker(tracking_uri=uri, system_metrics=False)
    second.attach(run_id, resume=True)
    # The resumed job trains steps 3..7 again (its checkpoint was at step 3).
    second.log_metric_batch([Metric("train/loss", 1.0 - s / 10, 0, s) for s in range(3, 8)])
    logger = second.lightning_logger()
    logger.log_metrics({"train/loss": 0.7}, step=3)
    logger.log_metrics({"train/loss": 0.2}, step=8)
    logger.persist()
    second.end("FINISHED")

    client = MlflowClient(uri)
    steps = sorted(m.step for m in client.get_metric_history(run_id, "train/loss"))
    assert steps == list(range(9))
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["glassworks.resumes"] == "1"
    assert "glassworks.error" not in run.data.tags and "glassworks.failed_stage" not in run.data.tags


def test_the_logger_sends_from_its_own_thread_and_ending_the_run_waits_for_nothing(tmp_path):
    """Batches go through one thread of ours, in order, and are in the store after persist().
    MLflow's own queue (``log_batch(synchronous=False)``) is never started: its thread notices the
    end of a run only after its 1 s ``queue.get`` timeout, which ``set_terminated`` waited out."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MLflowTracker(tracking_uri=uri, system_metrics=False, flush_every_n_steps=2, flush_min_interval_s=0)
    run_id = tracker.start("sender", {})
    logger = tracker.lightning_logger()
    for step in range(1, 9):
        logger.log_metrics({"train/loss": 1.0 / step}, step=step)
    assert logger.n_requests == 4
    logger.finalize("success")
    names = [t.name for t in threading.enumerate()]
    assert "MLflowAsyncLoggingLoop" not in names
    assert not any(name.startswith("glassworks-metrics") for name in names)  # shut down in finalize
    tracker.end("FINISHED")

    history = MlflowClient(uri).get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(s, 1.0 / s) for s in range(1, 9)]


def test_the_logger_sends_once_enough_steps_and_seconds_have_passed(tmp_path):
    """A batch every flush_every_n_steps steps, but no sooner than flush_min_interval_s after the
    last: what sending costs stays bounded however short the steps are."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MLflowTracker(tracking_uri=uri, system_metrics=False)
    run_id = tracker.start("interval", {})
    now = [0.0]
    logger = MLflowRunLogger(uri, run_id, flush_every_n_steps=2, flush_min_interval_s=5.0, clock=lambda: now[0])
    for step in range(1, 9):  # 0.5 s a step: steps 2, 4, 6 are due by count, not by time
        now[0] = step * 0.5
        logger.log_metrics({"train/loss": 1.0 / step}, step=step)
    assert logger.n_requests == 0
    now[0] = 5.0
    logger.log_metrics({"train/loss": 0.1}, step=10)  # 10 steps and 5 s since the start
    assert logger.n_requests == 1
    now[0] = 20.0
    logger.log_metrics({"train/loss": 0.05}, step=11)  # 15 s later but 1 step: not yet
    assert logger.n_requests == 1
    logger.persist()  # a checkpoint sends everything, due or not
    assert logger.n_requests == 2
    logger.finalize("success")
    tracker.end("FINISHED")
    history = MlflowClient(uri).get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == [*range(1, 9), 10, 11]
    with pytest.raises(ConfigError, match="flush_min_interval_s"):
        MLflowTracker(tracking_uri=uri, flush_min_interval_s=-1)
