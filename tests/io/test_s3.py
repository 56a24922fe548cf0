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
