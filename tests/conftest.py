"""Shared fixtures: real mp4 files, MLflow on SQLite in a temporary folder."""

from __future__ import annotations

import numpy as np
import pytest

from vidcil.config import Params


@pytest.fixture(autouse=True)
def _no_outside_mlflow(monkeypatch):
    """Tests never talk to a tracking server the developer may have configured."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


def dvc_project(root, remote=None) -> None:
    """``root`` as a DVC project (no git) whose default remote is a local folder."""
    from dvc.repo import Repo

    if (root / ".dvc").is_dir():
        return
    repo = Repo.init(str(root), no_scm=True)
    with repo.config.edit() as conf:
        conf["core"]["analytics"] = False
        conf["remote"]["local"] = {"url": str(remote or root / "dvc-remote")}
        conf["core"]["remote"] = "local"
    repo.close()


def tiny_params(root, **overrides) -> Params:
    """Params for a tiny stream under ``root`` (a DVC project): 32x32 clips, 4 segments, a few epochs."""
    dvc_project(root)
    data = {
        "paths": {"landing": str(root / "landing"), "store": str(root / "store"), "runs": str(root / "runs"),
                  "rejected": str(root / "rejected")},
        "model": {"arch": "resnet18", "num_segments": 4, "dropout": 0.0},
        "train": {"epochs_first": 3, "epochs": 2, "batch_size": 4, "lr": 0.01, "threads": 2},
        "memory": {"budget_bytes": 60_000, "keyframe_threshold": 0.05, "candidates_per_class": 3},
        "validation": {"min_train_per_class": 1, "min_test_per_class": 1},
        "gates": {"min_accuracy": 0.0, "min_new_accuracy": 0.0, "max_forgetting": 1.0, "max_old_drop": 1.0},
        "mlflow": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "test",
                   "model_name": "test-model"},
    }
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return Params.model_validate(data)


def moving_square(n_frames: int = 12, size: int = 32, jumps=(3, 8)) -> np.ndarray:
    """uint8 ``[T, H, W, 3]``: a square that stays put and jumps at the given frames."""
    frames = np.zeros((n_frames, size, size, 3), dtype=np.uint8)
    x = 2
    for t in range(n_frames):
        if t in jumps:
            x += 10
        frames[t, 8:20, x : x + 8] = 255
        frames[t, 0, 0] = t % 2  # a tiny change below any sensible threshold
    return frames
