"""Level 1 of the dual-granularity memory: ranking candidate videos and sharing the byte budget.

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
