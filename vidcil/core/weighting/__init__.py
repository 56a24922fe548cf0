"""Loss weightings: how much each loss term counts, epoch by epoch. One module per kind, registered in
:data:`LOSS_WEIGHTINGS` (``train.loss_weighting`` in params).

The tasks are cross-entropy and the distiller's terms (TSD: ``temporal`` and ``spatial``). Each
task ``k`` has a configured weight ``c_k`` (``ce_weight`` for CE, ``lam`` x the term's share of the
distillation loss for the others); a weighting multiplies it by ``w_k`` for the coming epoch:
``loss = sum_k c_k * w_k * L_k``. ``w_k`` comes from the epoch means of each task's loss so far
(``history``, one dict per finished epoch), so a resumed run picks up the same weights.

Add one: ``vidcil/core/weighting/<kind>.py`` with a config and ``@LOSS_WEIGHTINGS.register(<Config>)``
on a class whose ``__call__(history, tasks)`` returns ``{task: w}``.
"""

from __future__ import annotations

from typing import Protocol

from vidcil.core.registry import Registry

LOSS_WEIGHTINGS = Registry("loss weighting", __name__)


class LossWeighting(Protocol):
    def __call__(self, history: list[dict[str, float]], tasks: list[str]) -> dict[str, float]: ...
