"""TSN-style frame sampling and a dataset of decoded clips.

Videos are decoded once, when the dataset is built, and held as uint8 in memory: an epoch then
costs only indexing, so decoding never limits training speed however many epochs run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from vidcil.data.video import decode_video


def sample_indices(
    n_frames: int, num_segments: int, *, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Indices of ``num_segments`` frames out of ``n_frames``, in temporal order.

    ``n_frames >= num_segments``: the video is cut into equal segments and one frame is taken from
    each, at random in training (TSN) and from the middle otherwise. Fewer frames than segments (a
    keyframe memory): every frame is used and repeated as evenly as possible, order kept.
    """
    if n_frames < 1:
        raise ValueError("a clip needs at least one frame")
    if n_frames < num_segments:
        return np.floor(np.arange(num_segments) * n_frames / num_segments).astype(np.int64)
    edges = np.linspace(0, n_frames, num_segments + 1)
    if train:
        rng = rng or np.random.default_rng()
        picks = edges[:-1] + rng.random(num_segments) * (edges[1:] - edges[:-1])
    else:
        picks = (edges[:-1] + edges[1:]) / 2
    return np.minimum(np.floor(picks).astype(np.int64), n_frames - 1)


def to_model_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``[..., T, H, W, 3]`` -> float ``[..., T, 3, H, W]`` in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)
    return x.movedim(-1, -3)


@dataclass(frozen=True)
class ClipRef:
    """One labelled video (a full video or a keyframe shard) and where it came from."""

    path: Path
    label: int
    batch_id: str = ""
    video: str = ""  # the path in its batch's labels.csv


class ClipDataset(Dataset):
    """Decoded clips; items are ``(x [T, 3, H, W] float, label)``."""

    def __init__(self, refs: list[ClipRef], num_segments: int, *, train: bool, seed: int = 0,
                 decode: Callable[[Path], np.ndarray] = decode_video):
        self.refs = list(refs)
        self.num_segments = num_segments
        self.train = train
        self.rng = np.random.default_rng(seed)
        self.frames = [decode(r.path) for r in self.refs]  # ``decode``: e.g. a cache shared by many datasets

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        frames = self.frames[i]
        idx = sample_indices(len(frames), self.num_segments, train=self.train, rng=self.rng)
        return to_model_input(frames[idx]), self.refs[i].label

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.refs], dtype=np.int64)
