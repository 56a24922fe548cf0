"""Shared fixtures: real mp4 files, MLflow on SQLite in a temporary folder."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import numpy as np
import pytest

from vidcil.config import Params


@pytest.fixture(scope="session", autouse=True)
def _dvc_logs_to_the_session_streams():
    """DVC binds its log handlers to sys.stdout/err when first imported: imported inside a test that
    captures with ``capsys``, later DVC calls would write to that test's closed stream."""
    import dvc  # noqa: F401  (dvc/__init__ sets its logging up)


@pytest.fixture(autouse=True)
def _no_outside_mlflow(monkeypatch):
    """Tests never talk to a tracking server the developer may have configured."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


# A stream small enough for end-to-end tests of whole runners (dvc repro, Airflow): 2 batches of
# 2 classes, 32x32 clips, one epoch; every gate open.
TINY_STREAM_PARAMS = {
    "benchmark": {"class_batches": 2, "shift_batch": False, "train_per_class": 3, "test_per_class": 2,
                  "frames": 8, "size": 32},
    "data": {"input_size": 32, "short_side": 32, "num_workers": 0},
    "model": {"num_segments": 4},
    "train": {"epochs_first": 1, "epochs": 1, "batch_size": 4},
    "memory": {"budget_bytes": 80000, "candidates_per_class": 2},
    "validation": {"min_train_per_class": 2, "min_test_per_class": 1},
    "gates": {"min_accuracy": 0.0, "min_new_accuracy": 0.0, "min_accuracy_over_chance": 0.0,
              "min_new_accuracy_over_chance": 0.0, "max_forgetting": 1.0, "max_old_drop": 1.0,
              "require_learning": False},
}


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
                  "rejected": str(root / "rejected"), "cache": str(root / "cache")},
        "data": {"input_size": 32, "short_side": 32, "num_workers": 0},  # the tiny clips' native size
        "model": {"arch": "resnet18", "num_segments": 4, "dropout": 0.0},
        "train": {"epochs_first": 3, "epochs": 2, "batch_size": 4, "lr": 0.01, "threads": 2},
        "memory": {"budget_bytes": 60_000, "frames": {"kind": "fit", "threshold": 0.05}, "candidates_per_class": 3},
        "validation": {"min_train_per_class": 1, "min_test_per_class": 1},
        "gates": {"min_accuracy": 0.0, "min_new_accuracy": 0.0, "min_accuracy_over_chance": 0.0,
              "min_new_accuracy_over_chance": 0.0, "max_forgetting": 1.0, "max_old_drop": 1.0,
              "require_learning": False},
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


@pytest.fixture
def s3_endpoint(monkeypatch):
    """A moto S3 server on 127.0.0.1 with a bucket ``vidcil-data``; dummy credentials in the environment
    only. boto3 (``AWS_ENDPOINT_URL``) and MLflow (``MLFLOW_S3_ENDPOINT_URL``) find it there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": url,
                       "MLFLOW_S3_ENDPOINT_URL": url}.items():
        monkeypatch.setenv(var, value)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        boto3.client("s3", endpoint_url=url).create_bucket(Bucket="vidcil-data")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
