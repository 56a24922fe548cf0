"""Dual granularity, level 1 (ours): per class, the videos the teacher is most confident about."""

from __future__ import annotations

from typing import Literal

import numpy as np

from vidcil.core.memory.selection import SELECTIONS, Candidates
from vidcil.core.registry import PluginConfig


class ConfidenceConfig(PluginConfig):
    kind: Literal["confidence"] = "confidence"


@SELECTIONS.register(ConfidenceConfig)
class ConfidenceSelection:
    def __call__(self, candidates: Candidates) -> np.ndarray:
        return np.asarray(candidates.confidence, dtype=float)
