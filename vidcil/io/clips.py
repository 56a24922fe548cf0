"""A dataset of labelled clips read through the decoded-frame cache (its loader: :mod:`vidcil.core.loader`).

Items are ``(x [T, 3, S, S] float in [0, 1], label)``, and a third, ``stored [K]`` (the logits stored
with a memory clip, NaN-padded; DER++), when any clip of the dataset has stored logits. Frames come
from a frame source (the :class:`~vidcil.io.cache.FrameCache`), so nothing is held in memory between
items: memory stays bounded whatever the number, size or length of the videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

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
    logits: tuple[float, ...] | None = None  # a memory clip's logits, stored when it went in (DER++)
    # A memory shard: which of the source video's ``span`` working frames its frames are (the keyframes).
    # It is replayed as the source's timeline, each keyframe held until the next (:func:`hold_keyframes`).
    keyframes: tuple[int, ...] | None = None
    span: int | None = None


def hold_keyframes(frames: np.ndarray, keyframes: tuple[int, ...] | None, span: int | None) -> np.ndarray:
    """A shard's frames on its source video's timeline: frame ``t`` of ``span`` is the latest keyframe at
    or before ``t`` (the keyframe rule's own assumption: a frame not kept differs little from the last
    kept one), so a clip sampled from it keeps the source's timing — segments, motion speed, and still
    stretches as still. Without positions (or when they do not match the shard) the frames as they are."""
    if not keyframes or not span or len(keyframes) != len(frames) or span <= len(frames):
        return frames
    held = np.searchsorted(np.asarray(keyframes), np.arange(span), side="right") - 1
    return frames[np.maximum(held, 0)]


class ClipDataset(Dataset):
    """Clips of ``refs`` through ``transform``; keys are an index or ``(index, seed)``."""

    def __init__(self, refs: list[ClipRef], transform: Compose, source: FrameSource):
        self.refs, self.transform, self.source = list(refs), transform, source
        # Stored logits, NaN-padded to the widest: a clip without (or with fewer classes) is masked out.
        self.logit_width = max((len(r.logits) for r in self.refs if r.logits), default=0)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple:
        # (index, seed) from vidcil.core.loader.SeededSampler: the transforms draw from that seed
        i, seed = key if isinstance(key, tuple) else (key, None)
        ref = self.refs[i]
        rng = np.random.default_rng(seed) if seed is not None else None
        x = self.transform(hold_keyframes(self.source.frames(ref.path, ref.sha256), ref.keyframes, ref.span), rng)
        if not self.logit_width:
            return x, ref.label
        stored = torch.full((self.logit_width,), float("nan"))
        if ref.logits:
            stored[: len(ref.logits)] = torch.as_tensor(ref.logits, dtype=torch.float32)
        return x, ref.label, stored

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.refs], dtype=np.int64)
