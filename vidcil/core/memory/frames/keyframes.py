"""Level 2 of the dual-granularity memory: keyframes of an exemplar video.

The first frame is a keyframe; a later frame becomes one when its L2 distance to the latest
keyframe is at least ``threshold``. The distance is the root-mean-square pixel difference in
[0, 1] intensity (L2 norm / sqrt(number of values)), so one threshold suits any resolution.

The default frame policy until 2026-12-04 (``memory.frames: {kind: keyframes, threshold: 0.06}``); it
refuses a budget too small for one exemplar per class, where ``fit`` (the default now) adapts.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from vidcil.core.memory.frames import FRAME_POLICIES
from vidcil.core.registry import PluginConfig


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


class KeyframesConfig(PluginConfig):
    kind: Literal["keyframes"] = "keyframes"
    threshold: float = Field(0.06, ge=0)  # RMS pixel difference in [0, 1] that makes a new keyframe


@FRAME_POLICIES.register(KeyframesConfig)
class FixedThreshold:
    """Keyframes at one threshold for every video."""

    def __init__(self, threshold: float = 0.06):
        self.threshold = threshold

    def __call__(self, frames: np.ndarray, allowance: int = 0) -> list[int]:
        return select_keyframes(frames, self.threshold)
