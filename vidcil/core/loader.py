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
    """Every index once per epoch (shuffled or in order), each with a seed drawn from ``(seed, epoch)``.

    Across ``world`` processes (DDP, ``batch_size`` the global batch): every process draws the same
    order and seeds, keeps the clips that fill whole global batches (at least one: a set no larger
    than one batch is one batch, trimmed to a multiple of ``world``), and takes slice ``rank`` of
    each batch. The processes' batches together are the one-process run's batches, each clip with
    the same seed.
    """

    def __init__(self, n: int, seed: int, *, shuffle: bool, rank: int = 0, world: int = 1,
                 batch_size: int | None = None):
        if world > 1 and (batch_size is None or batch_size % world):
            raise ValueError(f"a batch of {batch_size} clips does not split evenly over {world} processes: "
                             "set train.batch_size to a multiple of the number of processes")
        if world > 1 and n < world:
            raise ValueError(f"{n} training clip(s) cannot be shared by {world} processes")
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0
        self.rank, self.world, self.batch_size = rank, world, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> tuple[int, int]:
        """(global batches, clips per process per batch) of a sharded epoch."""
        if self.n > self.batch_size:
            return self.n // self.batch_size, self.batch_size // self.world
        return 1, self.n // self.world

    def __len__(self) -> int:
        if self.world == 1:
            return self.n
        batches, per_process = self._batches()
        return batches * per_process

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        seeds = rng.integers(0, 2**62, size=self.n)
        if self.world > 1:
            batches, per_process = self._batches()
            mine = np.arange(batches * per_process * self.world).reshape(batches, self.world, per_process)
            mine = mine[:, self.rank].ravel()
            order, seeds = order[mine], seeds[mine]
        return iter([(int(i), int(s)) for i, s in zip(order, seeds)])


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # each worker is one process: no thread oversubscription


def clip_loader(data: Dataset, *, batch_size: int, train: bool, seed: int = 0, num_workers: int = 0,
                pin_memory: bool = False, rank: int = 0, world: int = 1) -> DataLoader:
    """Training: shuffled, seeded per item, last short batch dropped, workers kept across epochs;
    across ``world`` processes, this process's share of each ``batch_size`` batch (:class:`SeededSampler`).
    Evaluation: in order (predictions line up with ``data.refs``)."""
    if world > 1 and not train:
        raise ValueError("evaluation is not sharded: run it in one process")
    sampler = SeededSampler(len(data), seed, shuffle=train, rank=rank, world=world, batch_size=batch_size)
    per_process = batch_size // world
    batches = -(-len(sampler) // per_process)
    workers = min(num_workers, batches - 1)  # a single batch gains nothing from a worker process
    return DataLoader(
        data, batch_size=per_process, sampler=sampler, drop_last=train and len(data) > batch_size,
        num_workers=workers, pin_memory=pin_memory, persistent_workers=train and workers > 0,
        worker_init_fn=_worker_init if workers else None, prefetch_factor=2 if workers else None,
    )
