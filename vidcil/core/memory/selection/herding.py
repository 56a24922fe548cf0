"""iCaRL herding (Rebuffi et al., 2017): the videos whose mean stays closest to the class mean."""

from __future__ import annotations

from typing import Literal

import numpy as np

from vidcil.core.memory.selection import SELECTIONS, Candidates
from vidcil.core.registry import PluginConfig


def herding_priority(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per class, greedily add the video that keeps the mean of the chosen ones closest to the class
    mean (on L2-normalised ``features [N, D]``).

    Returns ``[N]``: the first chosen of a class gets the highest priority.
    """
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    priority = np.zeros(len(labels))
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        mu, chosen, total = f[idx].mean(axis=0), [], np.zeros(f.shape[1])
        left = list(range(len(idx)))
        for k in range(1, len(idx) + 1):
            gaps = np.linalg.norm(mu - (total + f[idx[left]]) / k, axis=1)
            pick = left.pop(int(np.argmin(gaps)))
            chosen.append(pick)
            total += f[idx[pick]]
        priority[idx[chosen]] = np.arange(len(idx), 0, -1, dtype=float)
    return priority


class HerdingConfig(PluginConfig):
    kind: Literal["herding"] = "herding"


@SELECTIONS.register(HerdingConfig)
class HerdingSelection:
    def __call__(self, candidates: Candidates) -> np.ndarray:
        return herding_priority(candidates.features(), candidates.labels)
