"""The asset-triggered path for real: api-server, scheduler and dag-processor on 127.0.0.1, two
batches dropped in the landing zone, the watcher announcing them, and `vidcil_batch` runs triggered
by those events processing both in arrival order (events folded into one run are not lost)."""

from __future__ import annotations

import json
import subprocess
import time

import mlflow
import pytest

from tests.runners.airflow_helpers import airflow_env, free_port, make_project, run

pytestmark = pytest.mark.e2e


def _json_lines(out: str) -> list:
    """The JSON list an `airflow ... -o json` command printed (log lines may come before it)."""
    for line in reversed(out.splitlines()):
        if line.startswith("[") and line.rstrip().endswith("]"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return []


def _runs(dag_id, cwd, env) -> list[dict]:
    return _json_lines(run(["airflow", "dags", "list-runs", dag_id, "-o", "json"], cwd, env))


def _dag_ids(cwd, env) -> set[str]:
    return {d["dag_id"] for d in _json_lines(run(["airflow", "dags", "list", "-o", "json"], cwd, env))}


def _wait(predicate, timeout, what, logs):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(5)
    tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def test_batches_dropped_in_the_landing_zone_trigger_runs_that_finish_with_a_new_champion(tmp_path):
    project, home = tmp_path / "project", tmp_path / "airflow"
    make_project(project)
    env = airflow_env(project, home, api_port=free_port())
    run(["airflow", "db", "migrate"], project, env)
    logs, servers = [], []
    try:
        for name in ("api-server", "scheduler", "dag-processor"):
            log = tmp_path / f"{name}.log"
            logs.append(log)
            cmd = ["airflow", name] + (["--host", "127.0.0.1", "--port", env["AIRFLOW__API__PORT"]]
                                       if name == "api-server" else [])
            servers.append(subprocess.Popen(cmd, cwd=project, env=env, stdout=open(log, "w"),
                                            stderr=subprocess.STDOUT))
        _wait(lambda: {"vidcil_batch", "vidcil_landing_watcher"} <= _dag_ids(project, env),
              180, "the DAGs to be parsed", logs)
        for dag_id in ("vidcil_batch", "vidcil_landing_watcher"):
            run(["airflow", "dags", "unpause", dag_id], project, env)

        run(["vidcil", "generate"], project, env)  # drops b000 and b001 into data/landing
        run(["airflow", "dags", "trigger", "vidcil_landing_watcher"], project, env)

        def both_decided():
            client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
            try:
                versions = client.search_model_versions("name = 'vidcil-video-classifier'")
            except Exception:  # the registry is created by the first run
                return None
            decided = {v.tags.get("vidcil.batch_id"): v.tags.get("vidcil.decision") for v in versions}
            return decided if decided == {"b000": "promoted", "b001": "promoted"} else None

        _wait(both_decided, 900, "both batches to be promoted", logs)
        runs = _wait(lambda: [r for r in _runs("vidcil_batch", project, env)
                              if r["state"] in ("success", "failed")] or None, 120, "finished runs", logs)
        assert all(r["state"] == "success" for r in runs), runs
        assert all(r["run_id"].startswith("asset_triggered__") for r in runs), runs
        client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
        champion = client.get_model_version_by_alias("vidcil-video-classifier", "champion")
        assert champion.tags["vidcil.batch_id"] == "b001"
        assert champion.tags["vidcil.teacher_version"] == str(client.search_model_versions(
            "name = 'vidcil-video-classifier' and tag.`vidcil.batch_id` = 'b000'")[0].version)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
