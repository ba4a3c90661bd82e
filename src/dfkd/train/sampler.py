"""A resumable, shardable sampler: the order depends only on (seed, epoch), and can start mid-epoch."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Indices of one epoch for one rank: a (seed, epoch) permutation, sharded by rank, from ``start`` on.

    Every rank gets the same number of indices (the permutation is padded by wrapping, as DistributedSampler does).
    """

    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order and skip the first ``start`` indices of this rank (resuming mid-epoch).

        Deliberately not named ``set_epoch``: Fabric's loader calls ``set_epoch(n_iterations)`` on its own, which
        would override the resumed position.
        """
        self.epoch, self.start = epoch, start

    def _rank_indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        per_rank = -(-self.size // self.world_size) if self.size else 0
        padded = order + order[: per_rank * self.world_size - len(order)] if order else []
        return padded[self.rank : per_rank * self.world_size : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._rank_indices()[self.start :])

    @property
    def num_indices(self) -> int:
        """Indices this rank sees in a whole epoch (before skipping ``start``)."""
        return -(-self.size // self.world_size) if self.size else 0

    def __len__(self) -> int:
        return max(0, self.num_indices - self.start)
