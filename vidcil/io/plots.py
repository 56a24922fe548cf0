"""Figures people would rather look at than numbers: logged to MLflow, written for DVC."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vidcil.core import metrics  # noqa: E402


def accuracy_matrix(record: dict):
    """Heatmap of A[i, j]: accuracy after batch i (rows) on batch j's test videos (columns)."""
    cols, rows = record["columns"], record["matrix"]
    A = metrics.accuracy_matrix(rows, len(cols))
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(cols), 1.0 + 0.6 * len(rows)))
    im = ax.imshow(A, vmin=0, vmax=1, cmap="viridis")
    for (i, j), v in np.ndenumerate(A):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
    ax.set_xticks(range(len(cols)), cols, rotation=45)
    ax.set_yticks(range(len(rows)), [b["batch_id"] for b in record["batches"]])
    ax.set_xlabel("test videos of batch")
    ax.set_ylabel("after batch")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def stream_curves(record: dict):
    """Accuracy on all seen classes and memory bytes, per batch."""
    batches = record["batches"]
    x = [b["batch_id"] for b in batches]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(x, [b["accuracy_all_seen"] for b in batches], "o-", label="accuracy, all seen")
    ax.plot(x, [b["forgetting_first"] for b in batches], "s--", label="forgetting (first batch)")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy / forgetting")
    ax2 = ax.twinx()
    ax2.bar(x, [b["memory_bytes"] / 1e3 for b in batches], alpha=0.25, color="gray", label="memory kB")
    ax2.set_ylabel("memory (kB)")
    fig.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_matrix(classes: list[str], matrix: list[list[int]], title: str = ""):
    """Heatmap of ``C[i, j]``: test clips of class ``i`` (rows) predicted as ``j`` (columns)."""
    C = np.asarray(matrix)
    side = 1.5 + 0.45 * len(classes)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(C, cmap="Blues")
    for (i, j), v in np.ndenumerate(C):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > C.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def save(fig, path) -> None:
    fig.savefig(path, dpi=100)
    close(fig)


def close(fig) -> None:
    plt.close(fig)
