"""Promotion gates: a challenger becomes champion only when every gate passes.

Gates (thresholds in ``params.yaml`` under ``gates``):

- ``min_accuracy``: accuracy on the test videos of every batch seen so far;
- ``min_accuracy_over_chance``: that accuracy as the share of the way from chance (1 / the classes the
  model knows) to perfect, (accuracy − chance) / (1 − chance), so that one floor means the same on 2
  classes as on 200: 0.55 on 2 classes is 0.10 of the way, 0.55 on 10 classes is 0.50;
- ``min_new_accuracy``: accuracy on this batch's test videos (it learnt the new data); its share of the
  way from chance likewise: ``min_new_accuracy_over_chance`` (a floor of 0 is off);
- ``max_forgetting``: mean forgetting over earlier batches (not for the first batch);
- ``memory_budget``: the memory it trained on is within ``memory.budget_bytes``;
- ``max_old_drop``: on the batches the champion knows, the challenger is at most this much worse
  than the champion (not for the first batch: there is no champion);
- ``learnt`` (``require_learning``): training did learn — its loss left chance level and its
  validation accuracy is above chance (:func:`vidcil.core.learner.did_not_learn`); a model that did
  not is registered (with the reason) but never promoted.
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


def over_chance(accuracy: float, classes: int) -> float:
    """(accuracy − chance) / (1 − chance) with chance = 1 / ``classes``: 0 at chance, 1 when perfect."""
    chance = 1.0 / classes
    return (accuracy - chance) / (1.0 - chance)


def evaluate_gates(ev: dict, gates: GateParams, budget_bytes: int) -> GateDecision:
    """``ev``: the evaluate step's output."""
    classes = len(ev["confusion"]["classes"])
    checks = {
        "min_accuracy": (ev["accuracy_all_seen"], gates.min_accuracy, ">="),
        "min_new_accuracy": (ev["accuracy_new"], gates.min_new_accuracy, ">="),
        "memory_budget": (ev["memory_bytes"], budget_bytes, "<="),
    }
    # A floor of 0 is no floor (below chance too); one class: chance is perfect, nothing to be over.
    for gate, accuracy in (("min_accuracy_over_chance", ev["accuracy_all_seen"]),
                           ("min_new_accuracy_over_chance", ev["accuracy_new"])):
        if classes > 1 and getattr(gates, gate) > 0:
            checks[gate] = (over_chance(accuracy, classes), getattr(gates, gate), ">=")
    if ev["history"]:
        checks["max_forgetting"] = (ev["mean_forgetting"], gates.max_forgetting, "<=")
    if "champion_row" in ev and ev.get("old_columns"):
        old = ev["old_columns"]
        drop = _mean_over(ev["champion_row"], ev["columns"], old) - _mean_over(ev["challenger_row"], ev["columns"], old)
        checks["max_old_drop"] = (drop, gates.max_old_drop, "<=")
    if getattr(gates, "require_learning", True) and "did_not_learn" in ev:
        checks["learnt"] = (0.0 if ev["did_not_learn"] else 1.0, 1.0, ">=")
    result, reasons = {}, []
    for gate, (value, threshold, op) in checks.items():
        ok = value >= threshold if op == ">=" else value <= threshold
        result[gate] = {"passed": bool(ok), "value": float(value), "threshold": float(threshold)}
        if not ok and gate == "learnt":
            reasons.append(f"did not learn: {ev['did_not_learn']}")
        elif not ok:
            reasons.append(f"{gate}: {value:.3f} is not {op} {threshold:.3g}"
                           + (f" ({classes} classes: chance {1 / classes:.3f})" if "chance" in gate else ""))
    return GateDecision(not reasons, result, reasons)
