"""A training budget from convergence: a validation split carved from the batch, stop on its plateau,
keep the best epoch; a model that did not learn is never promoted."""

import math
from pathlib import Path

import torch

from vidcil.config import GateParams, ModelParams, TrainParams
from vidcil.core.gates import evaluate_gates
from vidcil.core.learner import did_not_learn, holdout, learn_batch, make_student
from vidcil.core.training import Convergence, TrainResult, chance_floor, convergence_scores, plateau_step
from vidcil.io.clips import ClipRef
from tests.core.test_channel_matching import _ClipSet


def _refs(per_class, classes=2):
    return [ClipRef(Path(f"c{c}_{i}.mp4"), c, "b000", f"c{c}_{i}.mp4") for c in range(classes) for i in range(per_class)]


def test_holdout_is_per_class_fixed_by_the_seed_not_by_order_and_spares_small_classes():
    refs = _refs(10) + _refs(3, 3)[6:]  # classes 0 and 1: 10 clips each; class 2: 3
    train, val = holdout(refs, 0.2, seed=0)
    assert sorted({r.label for r in val}) == [0, 1]  # class 2 has 3 clips (< 4): all of them train
    assert sum(r.label == 0 for r in val) == 2 and len(train) + len(val) == len(refs)
    again = holdout(list(reversed(refs)), 0.2, seed=0)[1]
    assert sorted(r.video for r in again) == sorted(r.video for r in val)  # the same clips, any order
    assert sorted(r.video for r in holdout(refs, 0.2, seed=1)[1]) != sorted(r.video for r in val)
    assert holdout(refs, 0.0, seed=0) == (refs, [])  # off: every clip trains


def _options(epochs, patience=1, min_epochs=1):
    return TrainParams(epochs=epochs, epochs_first=epochs, batch_size=4, lr=0.05, weight_decay=0.0,
                       convergence={"patience": patience, "min_epochs": min_epochs})


def _student():
    model = ModelParams(arch="mobilenet_v3_small", num_segments=2, shift_div=8, dropout=0.0, input="rgb")
    return make_student(None, 2, model=model, mean=(0.5,) * 3, std=(0.25,) * 3, seed=0)


def _run(scores, patience=2, floor=0.6):
    """Epochs until the plateau rule stops (or all of ``scores`` ran), and the best epoch (1-based)."""
    best, best_epoch, stale = None, None, 0
    for epoch, score in enumerate(scores, 1):
        improved, stale = plateau_step(score, best, stale, floor)
        if improved:
            best, best_epoch = score, epoch
        if stale >= patience:
            return epoch, best_epoch
    return len(scores), best_epoch


def test_the_plateau_rule_counts_only_once_learning_started():
    at_chance = [(0.25, 1.39)] * 6 + [(0.9, 0.3)]  # from scratch: at chance for 6 epochs, then it takes off
    assert _run(at_chance) == (7, 7)  # never stopped at chance
    rising_then_flat = [(0.5, 1.0), (0.7, 0.8), (0.8, 0.6), (0.8, 0.7), (0.75, 0.7), (0.9, 0.2)]
    assert _run(rising_then_flat) == (5, 3)  # two epochs without a better one after 0.8: stop, keep epoch 3
    assert _run([(0.8, 0.6), (0.8, 0.5), (0.8, 0.4), (0.8, 0.45), (0.8, 0.5)]) == (5, 3)  # a lower loss is better
    assert chance_floor(2, 8) > 0.5 and chance_floor(2, 800) < 0.55 and chance_floor(10, 40) < 0.2
    # Scored with the memory's (trained-on) clips the score clears chance at once: whether learning started
    # is then the held-out clips' to say, and no epoch counts before it.
    assert plateau_step((0.8, 0.5), (0.9, 0.4), 0, 0.6, started=False) == (False, 0)
    assert plateau_step((0.8, 0.5), (0.9, 0.4), 1, 0.6, started=True) == (False, 2)


def test_training_keeps_the_best_epoch_and_resumes_after_it(tmp_path):
    torch.manual_seed(0)
    clips, labels = torch.rand(16, 2, 3, 32, 32), torch.tensor([0, 1] * 8)
    data = _ClipSet(clips, labels)
    validation = _ClipSet(clips[:8] + 0.05 * torch.rand(8, 2, 3, 32, 32), labels[:8])  # near the training clips
    student = _student()
    result = learn_batch(student, data, teacher=None, distil=None, train_options=_options(8), seed=0,
                         validation=validation, checkpoint=tmp_path / "ckpt.pt", fingerprint="f")
    assert result.validation_clips == 8 and all({"val_accuracy", "val_loss"} <= set(row) for row in result.history)
    best = result.history[result.best_epoch - 1]
    assert all(r["val_accuracy"] <= best["val_accuracy"] for r in result.history)
    (acc, loss), _ = convergence_scores(student, Convergence(validation), device=torch.device("cpu"), batch_size=4)
    assert acc == best["val_accuracy"] and math.isclose(loss, best["val_loss"], rel_tol=1e-5)  # the best weights
    assert result.steps == result.epochs * 4  # every step spent is counted, not only the best epoch's

    # A rerun with the same fingerprint resumes after the end: nothing more is trained, the same weights.
    again = _student()
    resumed = learn_batch(again, data, teacher=None, distil=None, train_options=_options(8), seed=0,
                          validation=validation, checkpoint=tmp_path / "ckpt.pt", fingerprint="f")
    assert (resumed.epochs, resumed.best_epoch, resumed.steps) == (result.epochs, result.best_epoch, result.steps)
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), again.state_dict().values()))


def test_without_a_validation_split_every_epoch_runs():
    data = _ClipSet(torch.rand(8, 2, 3, 32, 32), torch.tensor([0, 1] * 4))
    result = learn_batch(_student(), data, teacher=None, distil=None, train_options=_options(3), seed=0)
    assert result.epochs == 3 and result.best_epoch is None and not result.stopped_early


def test_a_model_at_chance_did_not_learn_and_is_held_with_the_reason():
    at_chance = TrainResult(epochs=5, history=[{"ce": 0.69}] * 5)
    assert did_not_learn(at_chance, 2).startswith("training loss 0.690 stayed at chance level (ln 2 = 0.693)")
    memorised = TrainResult(epochs=5, best_epoch=3, validation_clips=40,
                            history=[{"ce": 0.1, "val_accuracy": 0.15}] * 5)  # 10 classes: chance 0.10
    assert "validation accuracy 0.150 on 40 held-out clips is not above chance (0.100 on 10 classes" in \
        did_not_learn(memorised, 10)
    learnt = TrainResult(epochs=5, best_epoch=3, validation_clips=40, history=[{"ce": 0.1, "val_accuracy": 0.6}] * 5)
    few = TrainResult(epochs=5, best_epoch=3, validation_clips=6, history=[{"ce": 0.1, "val_accuracy": 0.1}] * 5)
    assert did_not_learn(learnt, 10) is None and did_not_learn(few, 10) is None  # 6 clips on 10 classes: cannot tell

    ev = {"columns": ["b0"], "challenger_row": [0.9], "accuracy_all_seen": 0.9, "accuracy_new": 0.9,
          "mean_forgetting": 0.0, "memory_bytes": 0, "history": [], "confusion": {"classes": ["a", "b"]},
          "did_not_learn": "training loss 0.690 stayed at chance level"}
    decision = evaluate_gates(ev, GateParams(), budget_bytes=1000)
    assert not decision.passed and decision.reasons == ["did not learn: training loss 0.690 stayed at chance level"]
    assert evaluate_gates(ev | {"did_not_learn": None}, GateParams(), budget_bytes=1000).passed
    assert evaluate_gates(ev, GateParams(require_learning=False), budget_bytes=1000).passed


def test_the_memorys_classes_count_in_the_epoch_kept():
    """A student that calls everything the new class is perfect on the batch's held-out clips (all of the
    new class) but has forgotten the old class the memory holds: with the memory scored, the plateau
    rule sees 0.5 (the mean per-class accuracy), not 1.0, and the held-out columns stay as they were."""
    torch.manual_seed(0)
    student = _student()
    with torch.no_grad():
        student.head.classifier.fc.bias.copy_(torch.tensor([-50.0, 50.0]))  # always class 1, the new one
    held_out = _ClipSet(torch.rand(4, 2, 3, 32, 32), torch.tensor([1] * 4))
    memory = _ClipSet(torch.rand(6, 2, 3, 32, 32), torch.tensor([0] * 6))
    cpu = {"device": torch.device("cpu"), "batch_size": 4}
    alone, row = convergence_scores(student, Convergence(held_out), **cpu)
    assert alone[0] == 1.0 and set(row) == {"val_accuracy", "val_loss"}
    score, row = convergence_scores(student, Convergence(held_out, memory=memory), **cpu)
    assert score[0] == 0.5 and row["val_accuracy"] == 1.0 and row["val_memory_accuracy"] == 0.0
    assert row["val_score"] == 0.5 and score[1] > alone[1]  # the forgotten class's loss counts too

    # Through the learner: every epoch's row has the memory's columns, and the flag turns them off.
    data = _ClipSet(torch.cat([held_out.clips, memory.clips]), torch.tensor([1] * 4 + [0] * 6))
    rows = learn_batch(_student(), data, teacher=None, distil=None, train_options=_options(2), seed=0,
                       validation=held_out, memory=memory).history
    assert all({"val_memory_accuracy", "val_score"} <= set(r) for r in rows)
    off = TrainParams(**(_options(2).model_dump() | {"convergence": {"patience": 1, "min_epochs": 1,
                                                                      "score_memory": False}}))
    rows = learn_batch(_student(), data, teacher=None, distil=None, train_options=off, seed=0,
                       validation=held_out, memory=memory).history
    assert not any("val_score" in r for r in rows)
