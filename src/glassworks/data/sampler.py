"""A shuffling sampler that a killed run can resume exactly, on one process or several.

torch's ``RandomSampler`` draws each epoch's order from a generator that advances epoch by
epoch, so a run resumed at epoch 3 cannot get epoch 3's order back without replaying 0–2. Here
epoch ``e``'s order is a pure function of ``(seed, e)``, and a resumed epoch skips the examples
that were already trained on.

Under DDP each rank takes every ``num_replicas``-th example of that order (the order padded with
its first examples to a multiple of ``num_replicas``, as torch's ``DistributedSampler`` does)
and skips the ones it already trained on. The sampler is a ``DistributedSampler`` so that
Lightning keeps it: it replaces any other sampler with its own ``DistributedSampler``, which
keeps no position, and a run resumed mid-epoch would start that epoch's order again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler


class EpochShuffleSampler(DistributedSampler):
    """Order of epoch ``e`` = ``randperm(n)`` seeded with ``seed + e``; rank ``r`` of
    ``num_replicas`` takes positions ``r, r + num_replicas, ...`` of it. Lightning calls
    :meth:`set_epoch` before every epoch (also when resuming)."""

    def __init__(self, data_source: Sized, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(data_source, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed))
        self._resume: tuple[int, int] | None = None  # (epoch, examples of this rank already seen)

    def resume_at(self, epoch: int, n_seen: int) -> None:
        """The next iteration of ``epoch`` starts after this rank's first ``n_seen`` examples (once)."""
        self._resume = (int(epoch), int(n_seen))

    def __len__(self) -> int:
        return len(self.dataset) if self.num_replicas == 1 else self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        if self.num_replicas > 1 and order:
            order = (order * -(-self.total_size // len(order)))[: self.total_size]  # padded, as torch's
            order = order[self.rank : self.total_size : self.num_replicas]
        skip = 0
        if self._resume is not None:
            epoch, n_seen = self._resume
            self._resume = None
            if epoch == self.epoch:
                skip = n_seen
        yield from order[skip:]


class ResumableTrainOrder:
    """A LightningDataModule's training order, resumable mid-epoch: mixed into every DataModule.

    Lightning stores ``state_dict()`` in every checkpoint and hands it back on restore; the next
    training loader (:meth:`train_loader`) then skips the examples the epoch already trained on.
    Its iterator's base seed comes from a generator of ``seed`` (without one a loader draws it
    from torch's global RNG, and a resumed run's dropout and masking would drift). Needs
    ``self.seed``, ``self.batch_size`` and Lightning's ``self.trainer``.
    """

    seed: int
    batch_size: int
    _resume_order: dict[str, int] | None = None

    def state_dict(self) -> dict[str, int]:
        trainer = self.trainer  # type: ignore[attr-defined]
        if trainer is None:
            return {}
        # Batches of the current epoch that went through a training step (the loop's own count:
        # the loader itself has already prefetched the next batch).
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"train_epoch": int(trainer.current_epoch), "train_examples_seen": int(done) * self.batch_size}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_order = dict(state_dict)

    def train_loader(self, rows: Sized, **loader_args: Any) -> DataLoader:
        """A shuffling loader over `rows` in epoch order, this rank's share of it under DDP, at the
        restored position (once)."""
        trainer = self.trainer  # type: ignore[attr-defined]
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochShuffleSampler(rows, self.seed, num_replicas=world, rank=rank)
        if self._resume_order:
            sampler.resume_at(self._resume_order["train_epoch"], self._resume_order["train_examples_seen"])
            self._resume_order = None
        return DataLoader(rows, batch_size=self.batch_size, sampler=sampler,
                          generator=torch.Generator().manual_seed(self.seed), **loader_args)
