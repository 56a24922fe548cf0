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


def redact(uri: str) -> str:
    """``uri`` fit for a log line: a password in it (``https://user:secret@host``) is replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def service_problem(error: BaseException) -> str | None:
    """If ``error`` (or what caused it) is an S3 endpoint that did not answer or refused our credentials,
    one line naming it and what to check; else None. (MLflow's own server errors are handled where
    MLflow is configured: :func:`vidcil.io.mlflow_registry.configure`.)"""
    try:
        from botocore import exceptions as b
    except ImportError:
        return None
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (b.EndpointConnectionError, b.ConnectTimeoutError, b.ReadTimeoutError,
                              b.ConnectionClosedError)):
            return (f"S3 did not answer ({error}); check that the endpoint ($AWS_ENDPOINT_URL, "
                    "$MLFLOW_S3_ENDPOINT_URL for MLflow's artifacts) is up and reachable from here; "
                    "orchestration.s3_retries / s3_timeout_s bound the wait")
        if isinstance(error, (b.NoCredentialsError, b.PartialCredentialsError)):
            return (f"S3 refused: {error}; give the worker credentials ($AWS_ACCESS_KEY_ID / "
                    "$AWS_SECRET_ACCESS_KEY, a profile, or its role)")
        error = error.__cause__ or error.__context__
    return None


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
