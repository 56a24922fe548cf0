"""Level 2 of the dual-granularity memory: keyframes of an exemplar video.

The first frame is a keyframe; a later frame becomes one when its L2 distance to the latest
keyframe is at least ``threshold``. The distance is the root-mean-square pixel difference in
[0, 1] intensity (L2 norm / sqrt(number of values)), so one threshold suits any resolution.

How a memory picks the frames of one exemplar is a *frame policy*: ``policy(frames, allowance)``
returns frame indices; ``allowance`` is the bytes this video may take (policies that do not adapt
ignore it). :class:`FixedThreshold` is the pipeline's; the others are the benchmark's ablations.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from vidcil.io.video import write_video


def frame_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference of two uint8 frames ``[H, W, C]``, in [0, 1]."""
    d = a.astype(np.float32) - b.astype(np.float32)
    return float(np.sqrt(np.mean(d * d)) / 255.0)


def select_keyframes(frames: np.ndarray, threshold: float) -> list[int]:
    """Indices of the keyframes of ``frames`` (uint8 ``[T, H, W, C]``), in temporal order."""
    if len(frames) == 0:
        raise ValueError("a video with no frame has no keyframe")
    keep = [0]
    for i in range(1, len(frames)):
        if frame_distance(frames[i], frames[keep[-1]]) >= threshold:
            keep.append(i)
    return keep


class FixedThreshold:
    """Keyframes at one threshold for every video."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def __call__(self, frames: np.ndarray, allowance: int) -> list[int]:
        return select_keyframes(frames, self.threshold)


class UniformFrames:
    """``count`` frames at the centres of equal segments, whatever they show (TCD's memory)."""

    def __init__(self, count: int = 8):
        self.count = count

    def __call__(self, frames: np.ndarray, allowance: int) -> list[int]:
        n = len(frames)
        if n <= self.count:
            return list(range(n))
        return sorted({int((i + 0.5) * n / self.count) for i in range(self.count)})


class AdaptiveThreshold:
    """Per video, the lowest threshold (the most keyframes) whose encoded shard fits ``allowance`` bytes.

    Bisection over ``[0, max_threshold]``; the shard size is measured by encoding, as the memory
    stores it. Returns no frame when even the first frame alone does not fit.
    """

    def __init__(self, max_threshold: float = 0.5, steps: int = 10, fps: int = 8):
        self.max_threshold, self.steps, self.fps = max_threshold, steps, fps

    def __call__(self, frames: np.ndarray, allowance: int) -> list[int]:
        sizes: dict[tuple[int, ...], int] = {}
        with tempfile.TemporaryDirectory() as tmp:
            def fits(keys: list[int]) -> bool:
                k = tuple(keys)
                if k not in sizes:
                    sizes[k] = write_video(Path(tmp) / "probe.mp4", frames[list(k)], fps=self.fps)
                return sizes[k] <= allowance

            if not fits([0]):
                return []
            lo, hi = 0.0, self.max_threshold  # fits(select(hi)) is assumed; hi -> few keyframes
            best = select_keyframes(frames, hi)
            if not fits(best):
                return [0]
            for _ in range(self.steps):
                mid = (lo + hi) / 2
                keys = select_keyframes(frames, mid)
                if fits(keys):
                    hi, best = mid, keys
                else:
                    lo = mid
            return best
