"""``count`` frames at the centres of equal segments, whatever they show (TCD's memory)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from vidcil.core.memory.frames import FRAME_POLICIES
from vidcil.core.registry import PluginConfig


class UniformConfig(PluginConfig):
    kind: Literal["uniform"] = "uniform"
    count: int = Field(8, ge=1)


@FRAME_POLICIES.register(UniformConfig)
class UniformFrames:
    """``count`` frames at the centres of equal segments, whatever they show (TCD's memory)."""

    def __init__(self, count: int = 8):
        self.count = count

    def __call__(self, frames: np.ndarray, allowance: int = 0) -> list[int]:
        n = len(frames)
        if n <= self.count:
            return list(range(n))
        return sorted({int((i + 0.5) * n / self.count) for i in range(self.count)})
