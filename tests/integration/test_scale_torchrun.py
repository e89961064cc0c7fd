"""Two torchrun "nodes" on loopback train one model with DDP (gloo) and make exactly ONE MLflow run,
owned by global rank 0, which alone explains, probes and reports after training; killed, the job
continues under torchrun with ``resume=last`` and ends with the uninterrupted job's histories. The
same job with its two ranks spawned by Lightning (``trainer=ddp_cpu``) has the same histories (same
world size, seeds and sharding): killed mid-epoch, it resumes to them too."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, cli_env
from tests.integration.test_resume import NOT_FOR_US, histories, only_run, pipeline, resume_file

pytestmark = pytest.mark.slow
TORCHRUN = Path(sys.executable).with_name("torchrun")
# 400 examples over 2 ranks, batches of 64: 4 steps an epoch, 8 in all; a resume checkpoint every
# 3 steps and after each validation.
OVERRIDES = ["data.source.n_train=400", "data.source.n_validation=50", "data.source.n_test=50",
             "trainer=ddp_cpu", "trainer.num_nodes=2", "trainer.devices=1", "trainer.max_epochs=2",
             "callbacks.rich_progress_bar=null", "logger.system_metrics=false",
             "callbacks.resume_checkpoint.every_n_train_steps=3", "callbacks.resume_checkpoint.min_interval_s=0",
             "explain.methods=[raw_attention,rollout]", "explain.n_examples=4", "explain.n_heatmaps=0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _can_hide_folders() -> bool:
    """Whether a process can get its own mount namespace here (root, or a container that allows it)."""
    try:
        probe = subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    except OSError:  # no unshare (util-linux) on this machine
        return False
    return probe.returncode == 0


def torchrun(cwd: Path, *args: str, fault: str | None = None,
             hidden: tuple[int, Path] | None = None) -> tuple[list[int], dict[int, str]]:
    """Both nodes of one job, started together in `cwd` (node n runs in `cwd`/node<n>): their exit
    codes and logs. With `hidden` = (node, folder), that node runs in its own mount namespace with
    an empty folder mounted over `folder`, as a machine without the shared file system sees it.
    The c10d rendezvous, not the order of the nodes, decides which node's process is global rank 0."""
    port = _free_port()
    # TMPDIR: torchrun's agent keeps a torchelastic_* folder there, which a killed agent leaves.
    extra = {"OMP_NUM_THREADS": "1", "TMPDIR": str(cwd), "PYTHONPATH": str(ROOT / "tests" / "faults")}
    env = cli_env(cwd, {**extra, **({"GLASSWORKS_FAULT": fault} if fault else {})})
    nodes, logs = [], {n: cwd / f"node{n}-{port}.log" for n in (0, 1)}
    try:
        for node in (0, 1):
            log = open(logs[node], "w")  # noqa: SIM115 - closed with the process
            hide = (["unshare", "--mount", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"', str(hidden[1])]
                    if hidden is not None and hidden[0] == node else [])
            nodes.append(subprocess.Popen(
                [*hide, str(TORCHRUN), "--nnodes=2", "--nproc-per-node=1",
                 "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                 "-m", "pipeline.run", *args, f"hydra.run.dir={cwd / f'node{node}'}"],
                cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        codes = [p.wait(timeout=600) for p in nodes]
    finally:
        for p in nodes:  # each torchrun with its workers (its own session), by its id
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    return codes, {n: path.read_text() for n, path in logs.items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("torchrun")
    codes, logs = torchrun(root, *OVERRIDES)
    assert codes == [0, 0], {n: text[-3000:] for n, text in logs.items()}
    return {"root": root, "logs": logs}


def test_two_torchrun_nodes_make_one_run_owned_by_rank_zero(uninterrupted):
    run = only_run(uninterrupted["root"])
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["glassworks.dist.world_size"] == "2"
    assert tags["glassworks.dist.num_nodes"] == "2"
    assert tags["glassworks.dist.launcher"] == "torchrun"
    assert tags["glassworks.dist.ranks"] == "0,1"
    assert tags["glassworks.dist.owner"].startswith("global rank 0 ")
    assert set(tags["glassworks.stages_done"].split(",")) == {"train", "explain", "robustness", "report"}
    assert "test/acc" in run.data.metrics and any(k.startswith("explain/") for k in run.data.metrics)
    # Rank 0 did the later stages once; the other rank trained and stopped.
    logs = uninterrupted["logs"]
    followers = [text for text in logs.values() if "global rank 1 of 2 (torchrun): training only" in text]
    assert len(followers) == 1 and "MLflow run " not in followers[0]
    assert not [advice for advice in NOT_FOR_US for text in logs.values() if advice in text]


def test_a_torchrun_job_killed_resumes_under_torchrun_exactly(uninterrupted, tmp_path):
    # Both ranks die after step 5; the last checkpoint is the one written after epoch 1's validation
    # (step 4), into the folder of the node whose process was global rank 0, which every rank loads
    # (on real nodes: a shared file system).
    codes, _ = torchrun(tmp_path, *OVERRIDES, fault="step:5")
    assert codes != [0, 0]
    run_id = only_run(tmp_path).info.run_id
    checkpoint = torch.load(resume_file(tmp_path), weights_only=True)
    assert checkpoint["global_step"] == 4
    # Each rank's own RNG states: the ranks pad their batches to their own longest text, so their
    # dropout and [MASK] draws differ; restoring rank 0's on both drifted epoch 2's val/loss.
    (state,) = [s for key, s in checkpoint["callbacks"].items() if key.startswith("ResumeCheckpoint")]
    assert len(state["rng_by_rank"]) == 2

    resumes = 1
    if _can_hide_folders():
        # The other node cannot see the writer's folder (no shared file system): every rank fails
        # together at the fit's start, with one message, instead of one training from step 0.
        writer = resume_file(tmp_path).parents[1]  # <tmp>/node<n>
        other = 1 - int(writer.name.removeprefix("node"))
        codes, logs = torchrun(tmp_path, "resume=last", hidden=(other, writer))
        assert codes[0] != 0 and codes[1] != 0
        message = re.compile(rf"resume: global rank\(s\) \[[01]\] of 2 find no {re.escape(str(resume_file(tmp_path)))}, "
                             "which the other ranks continue from")
        assert message.search(logs[0]) and message.search(logs[1]), {n: text[-3000:] for n, text in logs.items()}
        assert "training again from the start" not in logs[other]  # it said so before the ranks agreed
        assert only_run(tmp_path).info.status == "FAILED"
        resumes += 1

    codes, logs = torchrun(tmp_path, "resume=last")
    assert codes == [0, 0], {n: text[-3000:] for n, text in logs.items()}
    run = only_run(tmp_path)  # the same run: no second one was created
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.data.tags["glassworks.resumes"] == str(resumes)
    expected, got = histories(uninterrupted["root"]), histories(tmp_path)
    assert sorted(got) == sorted(expected) and "train/acc" in got
    assert {k: (v, expected[k]) for k, v in got.items() if v != expected[k]} == {}
    assert not [advice for advice in NOT_FOR_US for text in logs.values() if advice in text]


def test_a_spawned_ddp_job_killed_mid_epoch_resumes_exactly(uninterrupted, tmp_path):
    # Until 2026-12-02 Lightning put its own DistributedSampler in, which keeps no position (the
    # resumed epoch began its order again), and the checkpoint held rank 0's train/acc counts
    # alone, which every rank loaded.
    spawned = [o for o in OVERRIDES if not o.startswith(("trainer.num_nodes=", "trainer.devices="))]  # ddp_cpu: 2
    assert pipeline(tmp_path, *spawned, fault="step:4").returncode != 0  # both ranks die; the launcher fails
    assert torch.load(resume_file(tmp_path), weights_only=True)["global_step"] == 3  # mid-epoch 1
    proc = pipeline(tmp_path, "resume=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not [advice for advice in NOT_FOR_US if advice in proc.stderr]
    expected, got = histories(uninterrupted["root"]), histories(tmp_path)
    assert sorted(got) == sorted(expected) and "train/acc" in got
    assert {k: (v, expected[k]) for k, v in got.items() if v != expected[k]} == {}
