"""Promotion gates: a challenger becomes champion only when every gate passes.

Gates (thresholds in ``params.yaml`` under ``gates``):

- ``min_accuracy``: accuracy on the test videos of every batch seen so far;
- ``min_new_accuracy``: accuracy on this batch's test videos (it learnt the new data);
- ``max_forgetting``: mean forgetting over earlier batches (not for the first batch);
- ``memory_budget``: the memory it trained on is within ``memory.budget_bytes``;
- ``max_old_drop``: on the batches the champion knows, the challenger is at most this much worse
  than the champion (not for the first batch: there is no champion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the params section; core does not import the config layer
    from vidcil.config import GateParams


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    checks: dict[str, dict]  # gate -> {"passed", "value", "threshold"}
    reasons: list[str]  # one line per failed gate


def _mean_over(row: list[float], columns: list[str], chosen: list[str]) -> float:
    return float(np.mean([a for a, c in zip(row, columns) if c in chosen]))


def evaluate_gates(ev: dict, gates: GateParams, budget_bytes: int) -> GateDecision:
    """``ev``: the evaluate step's output."""
    checks = {
        "min_accuracy": (ev["accuracy_all_seen"], gates.min_accuracy, ">="),
        "min_new_accuracy": (ev["accuracy_new"], gates.min_new_accuracy, ">="),
        "memory_budget": (ev["memory_bytes"], budget_bytes, "<="),
    }
    if ev["history"]:
        checks["max_forgetting"] = (ev["mean_forgetting"], gates.max_forgetting, "<=")
    if "champion_row" in ev and ev.get("old_columns"):
        old = ev["old_columns"]
        drop = _mean_over(ev["champion_row"], ev["columns"], old) - _mean_over(ev["challenger_row"], ev["columns"], old)
        checks["max_old_drop"] = (drop, gates.max_old_drop, "<=")
    result, reasons = {}, []
    for gate, (value, threshold, op) in checks.items():
        ok = value >= threshold if op == ">=" else value <= threshold
        result[gate] = {"passed": bool(ok), "value": float(value), "threshold": float(threshold)}
        if not ok:
            reasons.append(f"{gate}: {value:.4g} is not {op} {threshold:.4g}")
    return GateDecision(not reasons, result, reasons)
