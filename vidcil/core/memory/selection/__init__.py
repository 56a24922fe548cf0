"""Exemplar selection strategies: one module per kind, registered in :data:`SELECTIONS`.

A strategy gives each candidate video a priority (higher = kept first, dropped last) from what the
teacher (the champion) makes of the learnt batch's training videos::

    strategy(candidates: Candidates) -> np.ndarray [N]

Add one: a module ``vidcil/core/memory/selection/<kind>.py`` with a config (``kind: Literal["<kind>"]``)
and a class decorated with ``@SELECTIONS.register(<Config>)``; ``memory.selection: {kind: <kind>}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vidcil.core.registry import Registry

SELECTIONS = Registry("exemplar selection", __name__)


@dataclass
class Candidates:
    """The learnt batch's training videos as the teacher sees them."""

    labels: np.ndarray  # [N] class index
    confidence: np.ndarray  # [N] the teacher's probability of the true class
    features: Callable[[], np.ndarray]  # () -> [N, D], the teacher's clip embeddings (computed on demand)
    seed: tuple[int, ...] = (0,)  # for strategies that draw at random
