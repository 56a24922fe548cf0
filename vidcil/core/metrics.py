"""Continual-learning metrics on an accuracy matrix.

``A[i, j]`` is the accuracy, after batch ``i`` was learnt, on the test videos of batch ``j``
(``j <= i``; entries with ``j > i`` are NaN). Rows are the stream of models in service.
"""

from __future__ import annotations

import numpy as np


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
