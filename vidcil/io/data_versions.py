"""Data versions with DVC.

Accepted batches (``<store>/batches/<id>``), memory versions (``<store>/memory/<id>``) and the
cumulative test index (``<store>/test_index.csv``) are ``dvc add``-ed where they lie: one ``.dvc``
file each, next to the data, to commit with the project. The DVC md5 of each is the data / memory /
test-index version recorded on the MLflow model version, and ``dvc push`` sends the content to the
project's default remote (a local folder, or S3 through dvc-s3). ``dvc pull`` in a fresh clone gives
the same bytes back. Rejected batches are never added.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

UNTRACKED = "untracked"


class VersioningError(RuntimeError):
    """The data store cannot be versioned as configured."""


def track(paths: list[Path], *, push: bool = False, remote: str | None = None) -> dict[str, str]:
    """``dvc add`` (and optionally ``dvc push``) ``paths``; their DVC md5 by path.

    Adding content that is already tracked unchanged is a no-op, so a rerun is safe.
    """
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    paths = [Path(p).resolve() for p in paths]
    try:
        root = Repo.find_root(str(paths[0].parent))
    except NotDvcRepoError as e:
        raise VersioningError(
            f"{paths[0]} is not inside a DVC project; run `dvc init` in the project (or point paths.store "
            "inside one), or set versioning.dvc: false in params.yaml") from e
    with Repo(root) as repo:
        repo.scm_context.quiet = True  # no "git add ..." hint per batch: the README says what to commit
        stages = repo.add([str(p) for p in paths])
        versions = {str(p): stage.outs[0].hash_info.value for p, stage in zip(paths, stages)}
        if push:
            try:
                repo.push(targets=[stage.path for stage in stages], remote=remote)
            except Exception as e:  # no remote configured, remote unreachable, credentials
                raise VersioningError(f"dvc push of {', '.join(map(str, paths))} failed: {e}; configure a "
                                      "remote (`dvc remote add -d ...`) or set versioning.push: false") from e
    return versions
