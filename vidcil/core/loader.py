"""The DataLoader of a clip dataset (any map-style dataset keyed by ``(index, seed)``, with ``labels``).

Randomness: the sampler (in the main process) hands every item a seed of its own, drawn from
``(seed, epoch)``; the transforms draw from it. A seeded run therefore samples the same frames
and crops with 0, 1 or 8 workers, and a run resumed at epoch ``e`` continues exactly where an
uninterrupted one would.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class SeededSampler(Sampler):
    """Every index once per epoch (shuffled or in order), each with a seed drawn from ``(seed, epoch)``."""

    def __init__(self, n: int, seed: int, *, shuffle: bool):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = rng.integers(0, 2**62, size=self.n)
        return iter([(int(i), int(s)) for i, s in zip(order, seeds)])


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # each worker is one process: no thread oversubscription


def clip_loader(data: Dataset, *, batch_size: int, train: bool, seed: int = 0, num_workers: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """Training: shuffled, seeded per item, last short batch dropped, workers kept across epochs.
    Evaluation: in order (predictions line up with ``data.refs``)."""
    sampler = SeededSampler(len(data), seed, shuffle=train)
    batches = -(-len(data) // batch_size)
    workers = min(num_workers, batches - 1)  # a single batch gains nothing from a worker process
    return DataLoader(
        data, batch_size=batch_size, sampler=sampler, drop_last=train and len(data) > batch_size,
        num_workers=workers, pin_memory=pin_memory, persistent_workers=train and workers > 0,
        worker_init_fn=_worker_init if workers else None, prefetch_factor=2 if workers else None,
    )
