import numpy as np
import pandas as pd

from vidcil.core.memory.ranking import class_share, fit_to_share, rank_exemplars, true_class_confidence
from vidcil.core.memory.selection.herding import herding_priority
from vidcil.core.memory.selection.random import random_priority


def test_confidence_is_the_probability_of_the_true_class():
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    assert true_class_confidence(probs, np.array([0, 0, 1])).tolist() == [0.7, 0.2, 0.4]


def test_ranking_keeps_the_most_confident_per_class_and_every_class():
    candidates = pd.DataFrame({
        "video": list("abcdefg"),
        "label": ["x", "x", "x", "y", "y", "z", "x"],
        "confidence": [0.2, 0.9, 0.5, 0.1, 0.3, 0.05, 0.95],
    })
    ranked = rank_exemplars(candidates, per_class=2)
    assert ranked[ranked.label == "x"].video.tolist() == ["g", "b"]
    assert ranked[ranked.label == "y"].video.tolist() == ["e", "d"]
    assert ranked[ranked.label == "z"].video.tolist() == ["f"]  # a weak class is still represented
    assert ranked[ranked.label == "x"]["rank"].tolist() == [0, 1]


def test_share_shrinks_as_classes_grow_and_least_confident_go_first():
    entries = pd.DataFrame({
        "label": ["a"] * 3 + ["b"] * 3,
        "confidence": [0.9, 0.8, 0.7, 0.6, 0.95, 0.5],
        "bytes": [100] * 6,
    })
    budget = 600
    kept = fit_to_share(entries, class_share(budget, 2))  # 300 B per class: everything stays
    assert len(kept) == 6
    kept = fit_to_share(entries, class_share(budget, 3))  # a third class arrives: 200 B each
    assert sorted(kept[kept.label == "a"].confidence) == [0.8, 0.9]
    assert sorted(kept[kept.label == "b"].confidence) == [0.6, 0.95]
    assert kept.groupby("label")["bytes"].sum().max() <= 200


def test_a_less_confident_small_video_never_displaces_a_more_confident_one():
    entries = pd.DataFrame({"label": ["a"] * 3, "confidence": [0.9, 0.8, 0.7], "bytes": [100, 250, 10]})
    kept = fit_to_share(entries, 300)
    assert kept.confidence.tolist() == [0.9]


def test_herding_picks_first_the_video_nearest_the_class_mean_then_keeps_the_mean_close():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [1.0, 0.1], [5.0, 5.0]])
    labels = np.array([0, 0, 0, 0, 1])
    p = herding_priority(features, labels)
    order = np.argsort(-p[labels == 0])
    assert order[0] == 2  # (0.7, 0.7) is nearest the normalised class mean
    assert order[1] in (0, 3) and set(order[1:]) == {0, 1, 3}  # then a partner that balances it
    assert p[4] == 1.0  # a class of one: its only video
    ranked = rank_exemplars(pd.DataFrame({"label": labels, "priority": p}), 2, by="priority")
    assert ranked.index.size == 3 and ranked.iloc[0]["priority"] == p.max()


def test_random_priority_is_a_permutation_that_depends_on_the_seed():
    labels = np.zeros(20, dtype=int)
    a, b = random_priority(labels, np.random.default_rng(0)), random_priority(labels, np.random.default_rng(1))
    assert sorted(a) == list(range(20)) and not np.array_equal(a, b)
