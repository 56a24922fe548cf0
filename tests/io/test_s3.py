"""S3 against a local endpoint (moto server on 127.0.0.1): the landing zone read with boto3, and the
MLflow artifacts of a real batch written to and served from S3."""

from __future__ import annotations

import hashlib

import boto3
import mlflow
import numpy as np
import pytest

from tests.conftest import tiny_params
from tests.io.test_validation import good_batch
from vidcil.io import mlflow_registry
from vidcil.io.landing import LandingZone
from vidcil.pipeline.runner import run_batch


def _tree(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _upload(folder, bucket, prefix, skip=()):
    s3 = boto3.client("s3")
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in skip:
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


def test_s3_landing_zone_lists_complete_batches_and_fetches_them_byte_identical(tmp_path, s3_endpoint):
    good_batch(tmp_path / "b000", seed=0)
    good_batch(tmp_path / "b001", seed=1)
    _upload(tmp_path / "b000", "vidcil-data", "landing/b000")
    _upload(tmp_path / "b001", "vidcil-data", "landing/b001", skip=("labels.csv",))  # still uploading
    zone = LandingZone("s3://vidcil-data/landing")
    assert zone.complete_batches() == ["b000"]
    fetched = zone.fetch("b000", tmp_path / "local" / "b000")
    assert _tree(fetched) == _tree(tmp_path / "b000")
    assert not list((tmp_path / "local").glob(".*partial"))
    assert LandingZone(str(tmp_path)).complete_batches() == ["b000", "b001"]


@pytest.mark.e2e
def test_mlflow_artifacts_of_a_real_batch_live_on_s3(tmp_path, s3_endpoint):
    params = tiny_params(tmp_path, mlflow={"artifact_location": "s3://vidcil-data/mlflow"})
    good_batch(params.paths.landing / "b000", seed=0)
    assert run_batch(params, "b000")["decision"] == "promoted"
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="vidcil-data", Prefix="mlflow/")["Contents"]]
    assert any(k.endswith("stream.json") for k in keys) and any("validation/summary.json" in k for k in keys)
    mlflow_registry.configure(params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location)
    champion = mlflow_registry.version_by_alias(params.mlflow.model_name, mlflow_registry.CHAMPION)
    model = mlflow.pyfunc.load_model(f"models:/{params.mlflow.model_name}@champion")
    probs = model.predict(np.zeros((1, 4, 3, 32, 32), dtype=np.float32))
    assert probs.shape == (1, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert mlflow.get_run(champion.run_id).info.artifact_uri.startswith("s3://vidcil-data/mlflow/")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("where", ["landing", "artifacts"])
def test_s3_down_stops_the_step_with_one_line_naming_the_endpoint_within_seconds(tmp_path, monkeypatch, where):
    import subprocess
    import sys
    import time

    import yaml

    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    env = {**__import__("os").environ, "AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint,
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    if where == "landing":
        params, step = tiny_params(tmp_path, orchestration={"landing_uri": "s3://vidcil-data/landing",
                                                            "s3_retries": 1, "s3_timeout_s": 2}), "land"
    else:  # the batch is local; its validation report goes to MLflow's artifact store on S3
        params, step = tiny_params(tmp_path, mlflow={"artifact_location": "s3://vidcil-data/mlflow"},
                                   orchestration={"s3_retries": 1, "s3_timeout_s": 2}), "validate"
        good_batch(params.paths.landing / "b000", seed=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vidcil.cli", "--params", str(tmp_path / "params.yaml"),
                           "step", step, "b000"], cwd=tmp_path, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert done.returncode == 75, done.stderr[-2000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("vidcil:")]
    assert "S3 did not answer" in line and endpoint in line and "Traceback" not in done.stderr
    assert seconds < 30
