"""Continual-learning metrics on an accuracy matrix.

``A[i, j]`` is the accuracy, after batch ``i`` was learnt, on the test videos of batch ``j``
(``j <= i``; entries with ``j > i`` are NaN). Rows are the stream of models in service.
"""

from __future__ import annotations

import numpy as np


def accuracy_matrix(rows: list[list[float]], width: int | None = None) -> np.ndarray:
    """Rows of growing length (row ``i`` covers batches ``0..i``) as ``A [len(rows), width]``, NaN-padded."""
    A = np.full((len(rows), width or max([len(rows)] + [len(r) for r in rows])), np.nan)
    for i, r in enumerate(rows):
        A[i, : len(r)] = r
    return A


def group_accuracy(correct: np.ndarray, groups: np.ndarray, names: list[str]) -> list[float]:
    """Accuracy of the clips of each group in ``names`` (e.g. each batch's test videos); NaN if none."""
    return [float(correct[groups == g].mean()) if (groups == g).any() else float("nan") for g in names]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``C [K, K]``: ``C[i, j]`` clips of class ``i`` predicted as ``j``."""
    C = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(C, (np.asarray(labels, dtype=int), np.asarray(predicted, dtype=int)), 1)
    return C


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """``[K]`` recall per class from a confusion matrix (NaN for a class without clips)."""
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)


def _check(A: np.ndarray) -> np.ndarray:
    A = np.asarray(A, dtype=float)
    if A.ndim != 2 or A.shape[0] > A.shape[1]:
        raise ValueError(f"accuracy matrix must be [batches_so_far, batches], got {A.shape}")
    return A


def forgetting_first(A: np.ndarray) -> float:
    """Accuracy on the first batch right after it was learnt, minus now: ``A[0,0] - A[-1,0]``."""
    A = _check(A)
    return float(A[0, 0] - A[-1, 0])


def mean_forgetting(A: np.ndarray) -> float:
    """Mean over earlier batches ``j < i`` of ``max_{l in [j, i-1]} A[l, j] - A[i, j]``.

    (Chaudhry et al., 2018.) 0.0 after the first batch.
    """
    A = _check(A)
    i = A.shape[0] - 1
    if i == 0:
        return 0.0
    return float(np.mean([np.nanmax(A[j:i, j]) - A[i, j] for j in range(i)]))


def backward_transfer(A: np.ndarray) -> float:
    """Mean over ``j < i`` of ``A[i, j] - A[j, j]`` (Lopez-Paz & Ranzato, 2017); negative = forgetting."""
    A = _check(A)
    i = A.shape[0] - 1
    if i == 0:
        return 0.0
    return float(np.mean([A[i, j] - A[j, j] for j in range(i)]))


def average_incremental_accuracy(accuracy_all_seen: list[float]) -> float:
    """Mean over batches of the accuracy on all classes seen so far (Rebuffi et al., 2017)."""
    if not accuracy_all_seen:
        raise ValueError("no batch evaluated yet")
    return float(np.mean(accuracy_all_seen))


def hit_at_k(scores: np.ndarray, labels: list[set[int]] | np.ndarray, k: int = 1) -> float:
    """Hit@k (YouTube-8M): the fraction of clips whose ``k`` top-scored classes hold one of their labels.

    ``scores [N, K]``; ``labels``: each clip's set of labels, or ``[N]`` single labels (then Hit@1
    is the top-1 accuracy).
    """
    if len(scores) == 0:
        return float("nan")
    top = np.argsort(-np.asarray(scores), axis=1)[:, :k]
    sets = [set(map(int, y)) if isinstance(y, (set, frozenset, list, tuple, np.ndarray)) else {int(y)} for y in labels]
    return float(np.mean([bool(sets[i] & set(top[i].tolist())) for i in range(len(sets))]))


def nearest_mean_accuracy(prototype_x: np.ndarray, prototype_y: np.ndarray, test_x: np.ndarray,
                          test_y: np.ndarray) -> float:
    """Accuracy of the nearest-mean-of-exemplars classifier (NME, iCaRL) next to the linear head.

    Each class's prototype is the mean of its L2-normalised encodings in ``prototype_x [M, D]`` (the
    clips the learner holds: the memory's and the newest batch's), normalised again; a test clip
    ``test_x [N, D]`` gets the class of the most similar prototype (cosine). A class without any
    prototype clip is never predicted, so its test clips count as wrong.
    """
    if len(test_x) == 0:
        return float("nan")

    def unit(x):
        x = np.asarray(x, dtype=np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    p, y = unit(prototype_x), np.asarray(prototype_y)
    classes = np.unique(y)
    means = unit(np.stack([p[y == c].mean(axis=0) for c in classes]))
    predicted = classes[np.argmax(unit(test_x) @ means.T, axis=1)]
    return float(np.mean(predicted == np.asarray(test_y)))
