"""A dataset of labelled clips read through the decoded-frame cache, and its DataLoader.

Items are ``(x [T, 3, S, S] float in [0, 1], label)``. Frames come from a frame source (the
:class:`~vidcil.io.cache.FrameCache`), so nothing is held in memory between items: memory stays
bounded whatever the number, size or length of the videos.

Randomness: the sampler (in the main process) hands every item a seed of its own, drawn from
``(seed, epoch)``; the transforms draw from it. A seeded run therefore samples the same frames
and crops with 0, 1 or 8 workers, and a run resumed at epoch ``e`` continues exactly where an
uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from vidcil.io.transforms import Compose
from vidcil.io.video import decode_working


class FrameSource(Protocol):
    def frames(self, path: Path, sha256: str | None = None) -> np.ndarray:
        """uint8 ``[F, h, w, 3]`` at the working resolution."""


@dataclass(frozen=True)
class DirectDecode:
    """A frame source without a cache: decodes on every read (tests, one-off tools)."""

    short_side: int = 128
    max_frames: int = 64

    def frames(self, path: Path, sha256: str | None = None) -> np.ndarray:
        return decode_working(path, self.short_side, self.max_frames)


@dataclass(frozen=True)
class ClipRef:
    """One labelled video (a full video or a keyframe shard) and where it came from."""

    path: Path
    label: int
    batch_id: str = ""
    video: str = ""  # the path in its batch's labels.csv
    sha256: str | None = None  # the file's content hash (the cache key); computed when missing


class ClipDataset(Dataset):
    """Clips of ``refs`` through ``transform``; keys are an index or ``(index, seed)``."""

    def __init__(self, refs: list[ClipRef], transform: Compose, source: FrameSource):
        self.refs, self.transform, self.source = list(refs), transform, source

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        ref = self.refs[i]
        rng = np.random.default_rng(seed) if seed is not None else None
        return self.transform(self.source.frames(ref.path, ref.sha256), rng), ref.label

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.refs], dtype=np.int64)


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


def clip_loader(data: ClipDataset, *, batch_size: int, train: bool, seed: int = 0, num_workers: int = 0,
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
