import pytest

from vidcil.config import GateParams
from vidcil.core.gates import evaluate_gates, over_chance

GATES = GateParams(min_accuracy=0.5, min_new_accuracy=0.3, min_accuracy_over_chance=0.25,
                   min_new_accuracy_over_chance=0.1, max_forgetting=0.2, max_old_drop=0.05)
CLASSES = ["a", "b", "c", "d"]


def _ev(**kw):
    ev = {"columns": ["b0", "b1"], "challenger_row": [0.8, 0.9], "accuracy_all_seen": 0.85,
          "accuracy_new": 0.9, "mean_forgetting": 0.1, "memory_bytes": 900, "history": [[0.9]],
          "champion_row": [0.82, 0.0], "old_columns": ["b0"], "confusion": {"classes": CLASSES}}
    return ev | kw


def test_all_gates_pass():
    d = evaluate_gates(_ev(), GATES, budget_bytes=1000)
    assert d.passed and d.reasons == []
    assert set(d.checks) == {"min_accuracy", "min_new_accuracy", "min_accuracy_over_chance",
                             "min_new_accuracy_over_chance", "memory_budget", "max_forgetting", "max_old_drop"}


def test_each_failing_gate_gives_its_reason():
    d = evaluate_gates(_ev(accuracy_all_seen=0.4, mean_forgetting=0.3, memory_bytes=1001,
                           challenger_row=[0.7, 0.9]), GATES, budget_bytes=1000)
    assert not d.passed
    failed = {r.split(":")[0] for r in d.reasons}
    # 0.4 on 4 classes is (0.4 - 0.25) / 0.75 = 0.2 of the way from chance: under 0.25 too
    assert failed == {"min_accuracy", "min_accuracy_over_chance", "max_forgetting", "memory_budget", "max_old_drop"}
    assert "min_accuracy_over_chance: 0.200 is not >= 0.25 (4 classes: chance 0.250)" in d.reasons


def test_first_batch_has_only_the_absolute_floors():
    ev = _ev(columns=["b0"], challenger_row=[0.9], history=[])
    del ev["champion_row"], ev["old_columns"]
    d = evaluate_gates(ev, GATES, budget_bytes=1000)
    assert d.passed and set(d.checks) == {"min_accuracy", "min_new_accuracy", "min_accuracy_over_chance",
                                          "min_new_accuracy_over_chance", "memory_budget"}


@pytest.mark.parametrize("accuracy, classes, expected", [(0.5, 2, 0.0), (0.55, 2, 0.1), (1.0, 7, 1.0),
                                                        (0.55, 10, 0.5), (0.1, 10, 0.0)])
def test_over_chance_is_zero_at_chance_and_one_when_perfect(accuracy, classes, expected):
    assert over_chance(accuracy, classes) == pytest.approx(expected)


def test_a_model_barely_over_chance_on_two_classes_is_held_though_over_the_absolute_floor():
    """The fault found: min_accuracy 0.5 promoted 0.55 on 2 classes (chance 0.50)."""
    ev = _ev(columns=["b0"], challenger_row=[0.55], history=[], accuracy_all_seen=0.55, accuracy_new=0.55,
             confusion={"classes": ["a", "b"]})
    del ev["champion_row"], ev["old_columns"]
    d = evaluate_gates(ev, GATES, budget_bytes=1000)
    assert not d.passed and d.checks["min_accuracy"]["passed"]
    assert d.reasons == ["min_accuracy_over_chance: 0.100 is not >= 0.25 (2 classes: chance 0.500)"]
    # The same accuracy on 10 classes is half the way from chance to perfect: it passes.
    assert evaluate_gates(ev | {"confusion": {"classes": list("abcdefghij")}}, GATES, budget_bytes=1000).passed


def test_one_class_has_no_chance_floor():
    ev = _ev(confusion={"classes": ["a"]})
    assert "min_accuracy_over_chance" not in evaluate_gates(ev, GATES, budget_bytes=1000).checks


def test_a_chance_floor_of_zero_is_off_even_below_chance():
    off = GATES.model_copy(update={"min_accuracy_over_chance": 0.0, "min_new_accuracy_over_chance": 0.0})
    d = evaluate_gates(_ev(accuracy_new=0.0, min_new_accuracy=0.0), off.model_copy(update={"min_new_accuracy": 0.0}),
                       budget_bytes=1000)
    assert d.passed and "min_new_accuracy_over_chance" not in d.checks
