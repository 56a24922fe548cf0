"""Fixed weights: every task keeps its configured weight (``w_k = 1``)."""

from __future__ import annotations

from typing import Literal

from vidcil.core.registry import PluginConfig
from vidcil.core.weighting import LOSS_WEIGHTINGS


class FixedConfig(PluginConfig):
    kind: Literal["fixed"] = "fixed"


@LOSS_WEIGHTINGS.register(FixedConfig)
class FixedWeights:
    def __call__(self, history: list[dict[str, float]], tasks: list[str]) -> dict[str, float]:
        return {k: 1.0 for k in tasks}
