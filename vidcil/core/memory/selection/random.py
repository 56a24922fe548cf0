"""Random videos within every class (the usual replay baseline)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from vidcil.core.memory.selection import SELECTIONS, Candidates
from vidcil.core.registry import PluginConfig


def random_priority(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order within every class."""
    return rng.permutation(len(labels)).astype(float)


class RandomConfig(PluginConfig):
    kind: Literal["random"] = "random"


@SELECTIONS.register(RandomConfig)
class RandomSelection:
    def __call__(self, candidates: Candidates) -> np.ndarray:
        return random_priority(candidates.labels, np.random.default_rng(list(candidates.seed)))
