"""A shuffling sampler that a killed run can resume exactly.

torch's ``RandomSampler`` draws each epoch's order from a generator that advances epoch by
epoch, so a run resumed at epoch 3 cannot get epoch 3's order back without replaying 0–2. Here
epoch ``e``'s order is a pure function of ``(seed, e)``, and a resumed epoch skips the examples
that were already trained on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler


class EpochShuffleSampler(RandomSampler):
    """Order of epoch ``e`` = ``randperm(n)`` seeded with ``seed + e``. Lightning calls
    :meth:`set_epoch` before every epoch (also when resuming). A ``RandomSampler`` subclass so
    that Lightning's DDP sampler replacement knows the loader shuffles."""

    def __init__(self, data_source: Sized, seed: int) -> None:
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, examples already seen)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, n_seen: int) -> None:
        """The next iteration of ``epoch`` starts after its first ``n_seen`` examples (once)."""
        self._resume = (int(epoch), int(n_seen))

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.data_source), generator=generator).tolist()
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
        """A shuffling loader over `rows` in epoch order, at the restored position (once)."""
        sampler = EpochShuffleSampler(rows, self.seed)
        if self._resume_order:
            sampler.resume_at(self._resume_order["train_epoch"], self._resume_order["train_examples_seen"])
            self._resume_order = None
        return DataLoader(rows, batch_size=self.batch_size, sampler=sampler,
                          generator=torch.Generator().manual_seed(self.seed), **loader_args)
