"""Keyframes at the lowest threshold whose shard fits the video's allowance (fitted per video)."""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np
from pydantic import Field

from vidcil.core.memory.frames import FRAME_POLICIES
from vidcil.core.memory.frames.keyframes import select_keyframes
from vidcil.core.registry import PluginConfig


class AdaptiveConfig(PluginConfig):
    kind: Literal["adaptive"] = "adaptive"
    max_threshold: float = Field(0.5, gt=0)
    steps: int = Field(10, ge=1)  # bisection steps


@FRAME_POLICIES.register(AdaptiveConfig)
class AdaptiveThreshold:
    """Per video, the lowest threshold (the most keyframes) whose encoded shard fits ``allowance`` bytes.

    Bisection over ``[0, max_threshold]``; ``encoded_size(frames) -> bytes`` measures a shard as
    the memory stores it (the memory store supplies it). Returns no frame when even the first frame
    alone does not fit.
    """

    def __init__(self, max_threshold: float = 0.5, steps: int = 10, *,
                 encoded_size: Callable[[np.ndarray], int]):
        self.max_threshold, self.steps, self.encoded_size = max_threshold, steps, encoded_size

    def __call__(self, frames: np.ndarray, allowance: int) -> list[int]:
        sizes: dict[tuple[int, ...], int] = {}

        def fits(keys: list[int]) -> bool:  # one encoding per set of frames
            k = tuple(keys)
            if k not in sizes:
                sizes[k] = self.encoded_size(frames[list(k)])
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
