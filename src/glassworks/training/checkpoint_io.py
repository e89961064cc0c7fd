"""Checkpoint files that are either complete or absent; off the training thread on an accelerator.

A process killed while ``torch.save`` writes leaves a truncated file. We write to a temporary
file in the same folder, fsync it, and ``os.replace`` it over the target: the rename is atomic
on POSIX, so a kill at any moment leaves the previous checkpoint intact and loadable.

Writing is slow next to a training step: a MiniLM checkpoint (weights and AdamW state, 260 MB)
takes ~0.4-1 s on 2 CPU cores, and an epoch's end writes two (the best and resume.ckpt; last.ckpt
links to the best).
Off the training thread, the training thread only copies the checkpoint's tensors to host memory
(the snapshot: the next optimizer step changes the weights in place) and one writer thread
serializes, fsyncs and renames while training goes on. That pays where training leaves the CPU
idle, on an accelerator. Where the training runs on the CPU itself the writer takes its cores from
the training threads: on 2 cores a MiniLM fit with 10 writes took as long either way (20.7 s in
line, 21.0 s off the thread; the default model 1.01x), so ``asynchronous="auto"`` (the default)
writes off the thread when the checkpoint's weights live on an accelerator and in line otherwise.
At most ``max_pending`` snapshots wait or are being written; one more save waits for the oldest,
which bounds the host memory to that many checkpoints. Writes land in the order they were asked
for. Removing or loading a file first waits for its pending write; the end of every fit
(Lightning's teardown) and the end of the process wait for all. A write that failed raises at the
next save, wait or teardown, naming its file.

Off the thread, a kill -9 loses the steps since the last write that *landed*, which may be one
write older than the last one asked for; a resumed run skips the points its history already holds
(glassworks.tracking.history), so its metrics stay exact either way.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins import TorchCheckpointIO
from lightning_utilities.core.apply_func import apply_to_collection

from glassworks.validation import ConfigError


class CheckpointWriteError(RuntimeError):
    """A checkpoint write on the writer thread failed; the message names the file."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic local writes: off the training thread when `asynchronous`
    is True, or is "auto" and the weights live on an accelerator; in line otherwise (remote URLs
    keep Lightning's path, in line)."""

    def __init__(self, asynchronous: bool | str = "auto", max_pending: int = 3) -> None:
        super().__init__()
        if not isinstance(asynchronous, bool) and asynchronous != "auto":
            raise ConfigError("asynchronous", f"must be true, false or auto, got {asynchronous!r}")
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ConfigError("max_pending", f"must be an integer >= 1 (checkpoints held in host memory), got {max_pending!r}")
        self.asynchronous = asynchronous
        self.max_pending = max_pending
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[tuple[Path, Future]] = []  # oldest first

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path):
            self.wait()
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        path = Path(path)
        if not (on_accelerator(checkpoint) if self.asynchronous == "auto" else self.asynchronous):
            write_atomically(checkpoint, path)
            return
        self._collect()
        # The folder now, not on the writer thread: Lightning links last.ckpt to the file just asked
        # for (save_last: link) before that file lands, and a link needs its folder.
        path.parent.mkdir(parents=True, exist_ok=True)
        snapshot = apply_to_collection(checkpoint, torch.Tensor, host_copy)
        while len(self._pending) >= self.max_pending:
            self._finish_oldest()
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self._pending.append((path, self._writer.submit(write_atomically, snapshot, path)))

    def remove_checkpoint(self, path: Any) -> None:
        self.wait(path)
        super().remove_checkpoint(path)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        self.wait(path)
        return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)

    def wait(self, path: Any = None) -> None:
        """Block until every pending write (or every one to `path`) has landed; raise
        :class:`CheckpointWriteError` for one that failed."""
        target = None if path is None or "://" in str(path) else Path(path)
        last = max((i for i, (p, _) in enumerate(self._pending) if target is None or p == target), default=-1)
        for _ in range(last + 1):  # writes land in order: everything up to the last one to `path`
            self._finish_oldest()

    def teardown(self) -> None:
        try:
            self.wait()
        finally:
            if self._writer is not None:
                self._writer.shutdown(wait=True)
                self._writer = None

    def _collect(self) -> None:
        """Drop the writes that have landed, oldest first; raise for a failed one."""
        while self._pending and self._pending[0][1].done():
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        path, future = self._pending.pop(0)  # a failed write is reported once
        error = future.exception()  # waits for it
        if error is not None:
            raise CheckpointWriteError(f"writing checkpoint {path} failed: {error}") from error


def on_accelerator(checkpoint: dict[str, Any]) -> bool:
    """Whether the checkpoint's weights (its ``state_dict``) live on a device other than the CPU."""
    weights = checkpoint.get("state_dict") or {}
    return any(isinstance(t, torch.Tensor) and t.device.type != "cpu" for t in weights.values())


def host_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of `tensor` in host memory that later in-place updates (the optimizer's) leave alone."""
    return tensor.detach().to("cpu", copy=True)


def write_atomically(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    # The rename itself lives in the directory entry: sync it too, or a power loss may undo it.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_partial_writes(folder: Path) -> list[Path]:
    """Temporary files a killed write left behind (never a valid checkpoint)."""
    leftovers = sorted(folder.glob(".*.ckpt.*.tmp")) if folder.is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers
