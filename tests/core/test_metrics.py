import numpy as np
import pytest

from vidcil.core.metrics import (
    average_incremental_accuracy, backward_transfer, forgetting_first, mean_forgetting, nearest_mean_accuracy,
)

nan = np.nan
# Hand-computed: rows = after batch i, columns = test videos of batch j.
A = np.array([
    [0.90, nan, nan],
    [0.70, 0.80, nan],
    [0.60, 0.50, 0.95],
])


def test_forgetting_of_the_first_batch():
    assert forgetting_first(A) == pytest.approx(0.90 - 0.60)
    assert forgetting_first(A[:2]) == pytest.approx(0.20)
    assert forgetting_first(A[:1]) == 0.0


def test_mean_forgetting_uses_the_best_earlier_accuracy():
    # batch 0: max(0.90, 0.70) - 0.60 = 0.30; batch 1: 0.80 - 0.50 = 0.30
    assert mean_forgetting(A) == pytest.approx(0.30)
    assert mean_forgetting(A[:2]) == pytest.approx(0.20)
    assert mean_forgetting(A[:1]) == 0.0
    rising = np.array([[0.5, nan, nan], [0.8, 0.9, nan], [0.6, 0.9, 0.7]])
    assert mean_forgetting(rising) == pytest.approx(((0.8 - 0.6) + 0.0) / 2)


def test_backward_transfer_is_negative_forgetting_against_just_learnt():
    assert backward_transfer(A) == pytest.approx(((0.60 - 0.90) + (0.50 - 0.80)) / 2)
    assert backward_transfer(np.array([[0.5, nan], [0.7, 0.9]])) == pytest.approx(0.2)


def test_average_incremental_accuracy():
    assert average_incremental_accuracy([0.9, 0.75, 0.6]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        average_incremental_accuracy([])


def test_hit_at_k_counts_a_clip_whose_top_k_holds_one_of_its_labels():
    import numpy as np

    from vidcil.core.metrics import hit_at_k

    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    assert hit_at_k(scores, np.array([0, 1, 1]), k=1) == pytest.approx(1 / 3)
    assert hit_at_k(scores, np.array([0, 1, 1]), k=2) == pytest.approx(1.0)
    assert hit_at_k(scores, [{0, 2}, {2}, {1, 2}], k=1) == pytest.approx(2 / 3)  # several labels per clip


def test_nearest_mean_classifies_by_the_closest_normalised_class_mean_and_never_predicts_an_absent_class():
    # class 0 points along x, class 2 along y (at very different lengths: only the direction counts)
    held_x = np.array([[1.0, 0.1], [10.0, -1.0], [0.0, 5.0], [0.2, 0.1]])
    held_y = np.array([0, 0, 2, 2])
    test_x = np.array([[3.0, 0.2], [0.1, 0.9], [-0.1, 7.0], [1.0, 1.0]])
    # class-2 mean of the unit vectors leans towards x ((0.2, 0.1) normalised), so (1, 1) goes to class 2
    assert nearest_mean_accuracy(held_x, held_y, test_x, np.array([0, 2, 2, 2])) == 1.0
    # a test clip of class 1 (no prototype) is always wrong; an empty test set is undefined
    assert nearest_mean_accuracy(held_x, held_y, test_x, np.array([0, 1, 2, 1])) == 0.5
    assert np.isnan(nearest_mean_accuracy(held_x, held_y, np.zeros((0, 2)), np.zeros(0)))
