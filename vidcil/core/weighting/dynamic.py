"""Dynamic weights from each loss's descent speed, exponentially smoothed (DWA with an EMA).

With ``L_k(t)`` task ``k``'s mean loss in epoch ``t`` (one cycle = one epoch):

- descent rate ``r_k(t-1) = L_k(t-1) / L_k(t-2)`` (near 1: the loss stalls; small: it falls fast);
- smoothed ``v_k(t-1) = beta * v_k(t-2) + (1 - beta) * r_k(t-1)``, starting from the first rate;
- weights ``w_k(t) = K * exp(v_k(t-1) / T) / sum_i exp(v_i(t-1) / T)`` over the ``K`` tasks.

A task whose loss stalls gets more weight, one that falls fast less; the weights sum to K, so they
are all 1 when every loss falls at the same speed (the loss is then the fixed one). The first two
epochs have no rate yet and keep ``w_k = 1``.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from vidcil.core.registry import PluginConfig
from vidcil.core.weighting import LOSS_WEIGHTINGS


class DynamicConfig(PluginConfig):
    kind: Literal["dynamic"] = "dynamic"
    beta: float = Field(0.5, ge=0, lt=1)  # smoothing: 0 uses the last rate alone
    temperature: float = Field(2.0, gt=0)  # T: larger, weights closer to 1


@LOSS_WEIGHTINGS.register(DynamicConfig)
class DynamicWeights:
    def __init__(self, beta: float = 0.5, temperature: float = 2.0):
        self.beta, self.temperature = beta, temperature

    def smoothed_rates(self, history: list[dict[str, float]], tasks: list[str]) -> dict[str, float] | None:
        """``v_k`` after the finished epochs in ``history``; None before two epochs."""
        v = None
        for before, last in zip(history[:-1], history[1:]):
            r = {k: last[k] / before[k] if before[k] > 0 else 1.0 for k in tasks}
            v = r if v is None else {k: self.beta * v[k] + (1 - self.beta) * r[k] for k in tasks}
        return v

    def __call__(self, history: list[dict[str, float]], tasks: list[str]) -> dict[str, float]:
        v = self.smoothed_rates(history, tasks)
        if v is None:
            return {k: 1.0 for k in tasks}
        top = max(v.values())  # subtracted for a stable softmax
        e = {k: math.exp((v[k] - top) / self.temperature) for k in tasks}
        total = sum(e.values())
        return {k: len(tasks) * e[k] / total for k in tasks}
