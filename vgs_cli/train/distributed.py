"""Distributed plumbing for the trainer: the samplers here, the process group in `vgs_cli.dist` (shared with
batch generation), re-exported so the trainer keeps one import (`from vgs_cli.train import distributed as D`).
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterator

from torch.utils.data import DistributedSampler, Sampler

from vgs_cli.dist import (  # noqa: F401  (re-exported)
    DistEnv,
    all_gather_objects,
    any_rank,
    barrier,
    broadcast_object,
    destroy,
    init_distributed,
    resolve_device,
)


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` that can skip the first `start` indices of the current epoch.

    Resuming mid-epoch skips at the index level, so no sample is decoded just to be thrown away. The skip
    applies to the next `__iter__` only; `set_epoch` for a later epoch starts it from the beginning.
    """

    def __init__(self, dataset: Any, *, num_replicas: int, rank: int, seed: int, shuffle: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return islice(super().__iter__(), start, None)

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler[int]):
    """Validation order: rank r sees indices r, r + W, r + 2W, ... with no padding, so every sample is
    counted exactly once when per-rank sums are added up."""

    def __init__(self, n: int, *, num_replicas: int, rank: int) -> None:
        self.indices = list(range(rank, n, num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
