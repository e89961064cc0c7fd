"""train/acc's counts in a DDP checkpoint: every rank's, summed, counted once after a resume.

Two real processes over gloo (torch.multiprocessing, a loopback port): each rank updates its
TextClassifier's train_acc with its own shard, rank 0 writes the checkpoint, and both ranks load
it into fresh modules, as a resumed fit does. Their synced accuracy must be the one of all the
rows, which a single process computes over both shards."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.classification import MulticlassAccuracy

from glassworks.models import TransformerConfig
from glassworks.models.lightning import TextClassifier

SPEC = TransformerConfig(d_model=8, n_heads=2, n_layers=1, d_ff=16, dropout=0.0, max_positions=8).build(12, 3, 0).spec
LABELS = torch.tensor([[0, 1, 2, 2, 1, 0], [2, 2, 1, 0, 0, 0]])  # (ranks, rows): each rank's shard
PREDICTED = torch.tensor([[0, 1, 1, 2, 0, 0], [2, 0, 1, 1, 0, 2]])


def _module() -> TextClassifier:
    return TextClassifier(model_spec=SPEC, optimizer=functools.partial(torch.optim.SGD, lr=0.1))


def _rank(rank: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        module = _module()
        module.train_acc.update(torch.nn.functional.one_hot(PREDICTED[rank], 3).float(), LABELS[rank])
        checkpoint = {"state_dict": module.state_dict()}
        module.on_save_checkpoint(checkpoint)  # collective: both ranks
        path = Path(folder) / "resume.ckpt"
        if rank == 0:
            torch.save(checkpoint, path)
        dist.barrier()
        loaded = torch.load(path, weights_only=True)
        resumed = _module()
        resumed.on_load_checkpoint(loaded)
        resumed.load_state_dict(loaded["state_dict"])
        accuracy = resumed.train_acc.compute()  # syncs the ranks' counts, as the epoch's end does
        torch.save(accuracy, Path(folder) / f"acc{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_a_ddp_checkpoint_counts_every_ranks_rows_once(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(port, str(tmp_path)), nprocs=2)
    alone = MulticlassAccuracy(num_classes=3)
    alone.update(PREDICTED.flatten(), LABELS.flatten())
    expected = alone.compute()
    for rank in (0, 1):
        assert torch.allclose(torch.load(tmp_path / f"acc{rank}.pt"), expected), rank
    rank_zero_only = MulticlassAccuracy(num_classes=3)
    rank_zero_only.update(PREDICTED[0].repeat(2), LABELS[0].repeat(2))
    assert not torch.allclose(rank_zero_only.compute(), expected)  # what each rank got before
