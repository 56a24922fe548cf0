import math

import pytest
import torch

from vidcil.core.losses import masked_cross_entropy, masked_mean
from vidcil.core.weighting import LOSS_WEIGHTINGS

TASKS = ["ce", "temporal", "spatial"]


def _dynamic(beta=0.5, temperature=2.0):
    return LOSS_WEIGHTINGS.build({"kind": "dynamic", "beta": beta, "temperature": temperature})


def _softmax_weights(v, temperature):
    e = [math.exp(x / temperature) for x in v]
    return [3 * x / sum(e) for x in e]


def test_the_first_two_epochs_keep_fixed_weights():
    history = [{"ce": 2.0, "temporal": 1.0, "spatial": 0.5}]
    assert _dynamic()([], TASKS) == {k: 1.0 for k in TASKS}
    assert _dynamic()(history, TASKS) == {k: 1.0 for k in TASKS}


def test_weights_follow_the_smoothed_descent_rates_by_hand():
    history = [{"ce": 2.0, "temporal": 1.0, "spatial": 1.0},
               {"ce": 1.0, "temporal": 0.9, "spatial": 1.0},  # rates 0.5, 0.9, 1.0
               {"ce": 0.8, "temporal": 0.45, "spatial": 1.0}]  # rates 0.8, 0.5, 1.0
    weighting = _dynamic(beta=0.5, temperature=2.0)
    # epoch 2 (two epochs done): v = the first rates
    w2 = weighting(history[:2], TASKS)
    assert [w2[k] for k in TASKS] == pytest.approx(_softmax_weights([0.5, 0.9, 1.0], 2.0))
    # epoch 3: v = 0.5 * v + 0.5 * r = (0.65, 0.7, 1.0)
    w3 = weighting(history, TASKS)
    assert [w3[k] for k in TASKS] == pytest.approx(_softmax_weights([0.65, 0.7, 1.0], 2.0))
    assert sum(w3.values()) == pytest.approx(3.0)
    assert w3["spatial"] > w3["temporal"] > w3["ce"]  # the stalled loss gets the most weight


def test_losses_falling_alike_get_equal_weights():
    history = [{k: 4.0 for k in TASKS}, {k: 2.0 for k in TASKS}, {k: 1.0 for k in TASKS}]
    assert _dynamic()(history, TASKS) == pytest.approx({k: 1.0 for k in TASKS})


def test_fixed_weights_are_one():
    assert LOSS_WEIGHTINGS.build({"kind": "fixed"})([{"ce": 1.0}, {"ce": 3.0}], ["ce"]) == {"ce": 1.0}


def test_a_sample_without_a_target_contributes_nothing():
    values = torch.tensor([1.0, 3.0, 100.0])
    assert masked_mean(values, torch.tensor([True, True, False])).item() == pytest.approx(2.0)
    none = masked_mean(values, torch.zeros(3, dtype=torch.bool))
    assert none.item() == 0.0  # not NaN
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]], requires_grad=True)
    labels = torch.tensor([0, 1, -1])  # the last clip has no label
    ce = masked_cross_entropy(logits, labels)
    assert ce.item() == pytest.approx(math.log(1 + math.exp(-2.0)))
    ce.backward()
    assert torch.equal(logits.grad[2], torch.zeros(2))  # no gradient from the unlabelled clip


def test_distillers_honour_the_mask():
    from vidcil.core.distill import DISTILLERS

    tsd = DISTILLERS.build({"kind": "tsd"})
    torch.manual_seed(0)
    s, t = torch.rand(3, 2, 4, 2, 2), torch.rand(3, 2, 4, 2, 2)
    masked = tsd({"layer4": s}, {"layer4": t}, mask=torch.tensor([True, False, False]))
    first = tsd({"layer4": s[:1]}, {"layer4": t[:1]})
    assert masked["distil"].item() == pytest.approx(first["distil"].item())
