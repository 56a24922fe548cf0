from vidcil.config import GateParams
from vidcil.core.gates import evaluate_gates

GATES = GateParams(min_accuracy=0.5, min_new_accuracy=0.3, max_forgetting=0.2, max_old_drop=0.05)


def _ev(**kw):
    ev = {"columns": ["b0", "b1"], "challenger_row": [0.8, 0.9], "accuracy_all_seen": 0.85,
          "accuracy_new": 0.9, "mean_forgetting": 0.1, "memory_bytes": 900, "history": [[0.9]],
          "champion_row": [0.82, 0.0], "old_columns": ["b0"]}
    return ev | kw


def test_all_gates_pass():
    d = evaluate_gates(_ev(), GATES, budget_bytes=1000)
    assert d.passed and d.reasons == []
    assert set(d.checks) == {"min_accuracy", "min_new_accuracy", "memory_budget", "max_forgetting", "max_old_drop"}


def test_each_failing_gate_gives_its_reason():
    d = evaluate_gates(_ev(accuracy_all_seen=0.4, mean_forgetting=0.3, memory_bytes=1001,
                           challenger_row=[0.7, 0.9]), GATES, budget_bytes=1000)
    assert not d.passed
    failed = {r.split(":")[0] for r in d.reasons}
    assert failed == {"min_accuracy", "max_forgetting", "memory_budget", "max_old_drop"}


def test_first_batch_has_only_the_absolute_floors():
    ev = _ev(columns=["b0"], challenger_row=[0.9], history=[])
    del ev["champion_row"], ev["old_columns"]
    d = evaluate_gates(ev, GATES, budget_bytes=1000)
    assert d.passed and set(d.checks) == {"min_accuracy", "min_new_accuracy", "memory_budget"}
