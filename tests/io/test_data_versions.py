"""DVC remotes: `dvc push` from one clone and `dvc pull` in a fresh clone give byte-identical data.

A local-folder remote (the default), and S3 through dvc-s3 against a local S3 endpoint (moto server
on 127.0.0.1, started and stopped here). The data is written and pushed by the real validate step.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.conftest import tiny_params
from tests.io.test_validation import good_batch
from vidcil.pipeline.runner import run_step

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def _run(cmd, cwd, env=None):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _git_dvc_project(root: Path, remote_url: str, env, **remote_options) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    root.mkdir(parents=True)
    _run(["git", "init", "-q"], root)
    dvc = [str(BIN / "dvc")]
    _run(dvc + ["init", "-q"], root, env)
    _run(dvc + ["remote", "add", "-d", "store", remote_url], root, env)
    for key, value in remote_options.items():
        _run(dvc + ["remote", "modify", "store", key, value], root, env)
    _run(git + ["add", "-A"], root)
    _run(git + ["commit", "-qm", "dvc"], root)


def _push_then_pull_in_a_fresh_clone(tmp_path, remote_url, env, **remote_options):
    """Validate b000 into project A's store (which pushes it); clone A; `dvc pull` in the clone."""
    a, b = tmp_path / "a", tmp_path / "b"
    _git_dvc_project(a, remote_url, env, **remote_options)
    params = tiny_params(tmp_path / "work")  # landing, runs and MLflow outside the project
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"store": a / "data/store"})})
    good_batch(params.paths.landing / "b000", seed=0)
    out = run_step(params, "validate", "b000")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    _run(git + ["add", "-A"], a)
    _run(git + ["commit", "-qm", "b000 accepted"], a)
    committed = _run(["git", "ls-files"], a).split()
    assert "data/store/batches/b000.dvc" in committed and not any(f.endswith(".mp4") for f in committed)

    _run(["git", "clone", "-q", str(a), str(b)], tmp_path)
    _run([str(BIN / "dvc"), "pull"], b, env)
    assert _tree(b / "data/store") == _tree(a / "data/store") != {}
    return out


def test_local_remote_push_and_pull_are_byte_identical(tmp_path):
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}
    out = _push_then_pull_in_a_fresh_clone(tmp_path, str(tmp_path / "remote"), env)
    md5 = out["data_version"]
    assert md5.endswith(".dir") and (tmp_path / "remote/files/md5" / md5[:2] / md5[2:]).is_file()


def test_s3_remote_push_and_pull_are_byte_identical(tmp_path, s3_endpoint):
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}
    out = _push_then_pull_in_a_fresh_clone(tmp_path, "s3://vidcil-data/dvc", env, endpointurl=s3_endpoint)
    keys = {o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint)
            .list_objects_v2(Bucket="vidcil-data", Prefix="dvc/")["Contents"]}
    md5 = out["data_version"]
    assert f"dvc/files/md5/{md5[:2]}/{md5[2:]}" in keys
    assert "testing" not in (tmp_path / "a/.dvc/config").read_text()  # credentials never in the config
