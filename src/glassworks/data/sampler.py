"""A shuffling sampler that a killed run can resume exactly.

torch's ``RandomSampler`` draws each epoch's order from a generator that advances epoch by
epoch, so a run resumed at epoch 3 cannot get epoch 3's order back without replaying 0–2. Here
epoch ``e``'s order is a pure function of ``(seed, e)``, and a resumed epoch skips the examples
that were already trained on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import RandomSampler


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
