"""The incoming-batch contract: ``<landing>/<batch_id>/labels.csv`` + the video files it lists.

``vidcil.io.validation`` checks a landed batch against it; what is accepted is stored as
``<store>/batches/<batch_id>/`` with ``manifest.csv`` (``MANIFEST_COLUMNS`` + extra labels.csv
columns) next to the accepted videos.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS = ("video", "label", "split")
SPLITS = ("train", "test")
MANIFEST_COLUMNS = [
    "video", "label", "split", "sha256", "bytes", "frames", "fps", "width", "height", "duration_s", "codec",
    "variable_frame_rate",
]


class ServiceUnavailable(RuntimeError):
    """A service the pipeline needs (the MLflow server, S3) did not answer within its bounded retries."""


class BatchRejected(ValueError):
    """The batch as a whole breaks the contract; nothing downstream may run."""


class BatchSetAside(RuntimeError):
    """The batch is retired (``vidcil retire``) or was set aside after failing a step too often: no step
    runs for it again; the stream goes on without it (a corrected copy lands under a new id)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(manifest: pd.DataFrame) -> str:
    """Content hash of a batch: independent of row order and of where the files live."""
    lines = sorted(
        f"{r.video}\t{r.label}\t{r.split}\t{r.sha256}" for r in manifest.itertuples(index=False)
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
