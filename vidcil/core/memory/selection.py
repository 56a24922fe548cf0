"""Level 1 of the dual-granularity memory: which videos of old data to keep.

Per class, the videos the teacher gives the highest probability of their true class come first;
every class is represented. Under a byte budget each of the C classes seen so far gets an equal
share, so when classes grow each share shrinks and the least confident exemplars go first.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def true_class_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``probs [N, K]`` (softmax), ``labels [N]`` -> ``[N]``: probability of each true class."""
    return probs[np.arange(len(labels)), labels]


def rank_exemplars(candidates: pd.DataFrame, per_class: int, by: str = "confidence") -> pd.DataFrame:
    """The ``per_class`` highest rows of each class by column ``by``, highest first.

    ``candidates`` needs columns ``label`` and ``by``; ties keep the input order.
    """
    ranked = candidates.sort_values(["label", by], ascending=[True, False], kind="stable")
    ranked = ranked.groupby("label", sort=True).head(per_class)
    return ranked.assign(rank=ranked.groupby("label").cumcount()).reset_index(drop=True)


def class_share(budget_bytes: int, num_classes: int) -> int:
    if num_classes < 1:
        raise ValueError("no class to keep exemplars of")
    return budget_bytes // num_classes


def fit_to_share(entries: pd.DataFrame, share: int) -> pd.DataFrame:
    """Per class, the highest-priority entries whose bytes add up to at most ``share``.

    ``entries`` needs ``label``, ``bytes`` and ``priority`` (or, without it, ``confidence``). Stops at the first entry of a class that does not fit, so a lower-priority video
    never displaces a higher one.
    """
    key = "priority" if "priority" in entries else "confidence"
    kept = []
    for _, group in entries.groupby("label", sort=True):
        group = group.sort_values(key, ascending=False, kind="stable")
        within = group["bytes"].cumsum() <= share
        kept.append(group[within.cummin()])
    return pd.concat(kept) if kept else entries.iloc[:0]


# Other ways to choose the videos (the benchmark's memory ablation). Each gives a priority per
# candidate, higher = kept first, in the same role the confidence plays for dual granularity.

def random_priority(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order within every class."""
    return rng.permutation(len(labels)).astype(float)


def herding_priority(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """iCaRL herding (Rebuffi et al., 2017): per class, greedily add the video that keeps the mean
    of the chosen ones closest to the class mean (on L2-normalised ``features [N, D]``).

    Returns ``[N]``: the first chosen of a class gets the highest priority.
    """
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    priority = np.zeros(len(labels))
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        mu, chosen, total = f[idx].mean(axis=0), [], np.zeros(f.shape[1])
        left = list(range(len(idx)))
        for k in range(1, len(idx) + 1):
            gaps = np.linalg.norm(mu - (total + f[idx[left]]) / k, axis=1)
            pick = left.pop(int(np.argmin(gaps)))
            chosen.append(pick)
            total += f[idx[pick]]
        priority[idx[chosen]] = np.arange(len(idx), 0, -1, dtype=float)
    return priority
