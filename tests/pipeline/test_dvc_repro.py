"""`dvc repro` on a copy of the project with a tiny stream: real DVC, real pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import TINY_STREAM_PARAMS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

TINY = TINY_STREAM_PARAMS


def _run(cmd, cwd, env):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_dvc_repro_runs_the_stream_and_declares_metrics_and_plots(tmp_path):
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    project = tmp_path / "project"
    for rel in tracked:
        if (ROOT / rel).is_file():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, project / rel)
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    _run(["git", "init", "-q"], project, env)
    _run(git + ["add", "-A"], project, env)
    _run(git + ["commit", "-qm", "copy"], project, env)
    dvc = [sys.executable, "-m", "dvc"]

    _run(dvc + ["repro"], project, env)
    metrics = json.loads(_run(dvc + ["metrics", "show", "--json"], project, env))
    values = metrics[""]["data"]["reports/metrics.json"]["data"]
    assert {"accuracy_all_seen", "forgetting_first", "average_incremental_accuracy", "memory_bytes"} <= set(values)
    assert 0.0 <= values["accuracy_all_seen"] <= 1.0
    stream = json.loads((project / "reports/stream.json").read_text())
    assert [b["batch_id"] for b in stream["batches"]] == ["b000", "b001"]
    assert (project / "reports/plots/accuracy_matrix.png").stat().st_size > 0
    rendered = json.loads(_run(dvc + ["plots", "show", "--json"], project, env))["data"]
    curve = json.dumps(rendered["Accuracy and forgetting after each batch"])
    assert "accuracy_all_seen" in curve and "b001" in curve
    assert "reports/plots/accuracy_matrix.png" in rendered

    # Every accepted batch, memory version and the test index is DVC-tracked in the store and pushed
    # to the default remote (dvc-remote/); the champion's data version is the batch's DVC md5.
    store = project / "data/store"
    tracked = sorted(p.relative_to(store).as_posix() for p in store.rglob("*.dvc"))
    assert tracked == ["batches/b000.dvc", "batches/b001.dvc", "memory/b000.dvc", "memory/b001.dvc",
                       "test_index.csv.dvc"]
    md5 = yaml.safe_load((store / "batches/b001.dvc").read_text())["outs"][0]["md5"]
    assert (project / "dvc-remote/files/md5" / md5[:2] / md5[2:]).is_file()
    pushed = _run(dvc + ["status", "--cloud"] + [f"data/store/{t}" for t in tracked], project, env)
    assert "Cache and remote 'local' are in sync" in pushed
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("vidcil-video-classifier", "champion")
    assert champion.tags["vidcil.batch_id"] == "b001" and champion.tags["vidcil.data_version"] == md5

    # Nothing changed: DVC reruns nothing.
    again = _run(dvc + ["repro"], project, env)
    assert "didn't change" in again and "Running stage" not in again
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert {o["path"] for o in lock["stages"]["stream"]["outs"]} >= {"runs", "mlflow.db"}
