"""Airflow: the DAGs import, have the expected shape, and `airflow dags test` runs a real batch end to
end (local distillation, SQLite metadata DB, MLflow on SQLite)."""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import pytest

from tests.runners.airflow_helpers import ROOT, airflow_env, make_project, run

STEPS = ["pick_batch", "land", "validate", "select_exemplars", "extract_keyframes", "distil", "evaluate",
         "register", "gates", "decide", "promote", "hold", "continue_stream"]


# Importing Airflow reconfigures logging for the whole process, so the DAG bag is read in a child.
DESCRIBE = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=DAGS)
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "tasks": [t.task_id for t in dag.tasks], "max_active_runs": dag.max_active_runs,
        "down": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
        "types": {t.task_id: type(t).__name__ for t in dag.tasks},
        "retries": {t.task_id: [t.retries, t.retry_exponential_backoff] for t in dag.tasks},
        "outlets": {t.task_id: [o.name for o in t.outlets] for t in dag.tasks},
        "schedule": [a.name for a in dag.timetable.asset_condition.objects]
                    if getattr(dag.timetable, "asset_condition", None) else type(dag.timetable).__name__,
    }
print("JSON" + json.dumps(out))
"""


# One task's callable as the worker runs it (Airflow's exception types, the DAG file's code).
RUN_TASK = """
import sys
sys.path.insert(0, DAGS)
import vidcil_dags
try:
    vidcil_dags.run_component(sys.argv[1], sys.argv[2])
except Exception as e:
    print(f"{type(e).__name__}: {e}")
""".replace("DAGS", repr(str(ROOT / "dags")))


def _describe(tmp_path, **env) -> dict:
    make_project(tmp_path)
    code = DESCRIBE.replace("DAGS", repr(str(ROOT / "dags")))
    out = run([sys.executable, "-c", code], tmp_path, airflow_env(tmp_path, tmp_path / "airflow", **env))
    return json.loads(out[out.index("JSON") + 4:])


def test_dags_import_with_the_expected_tasks_and_dependencies(tmp_path):
    bag = _describe(tmp_path)
    assert bag["import_errors"] == {}
    assert set(bag["dags"]) == {"vidcil_landing_watcher", "vidcil_batch"}
    batch = bag["dags"]["vidcil_batch"]
    assert batch["tasks"] == STEPS
    down = batch["down"]
    chain = STEPS[1:10]
    for a, b in zip(chain, chain[1:]):
        assert b in down[a], f"{a} -> {b}"
    assert down["decide"] == ["hold", "promote"]
    assert down["promote"] == down["hold"] == ["continue_stream"]
    assert batch["max_active_runs"] == 1
    assert batch["schedule"] == ["vidcil_incoming_batches"]
    assert batch["retries"]["validate"] == [2, True] and batch["retries"]["pick_batch"][0] == 0
    assert batch["types"]["distil"] == "_PythonDecoratedOperator"  # in the worker by default
    assert batch["outlets"]["continue_stream"] == ["vidcil_incoming_batches"]
    watcher = bag["dags"]["vidcil_landing_watcher"]
    assert watcher["tasks"] == ["find_new_batches", "announce"]
    assert watcher["outlets"]["announce"] == ["vidcil_incoming_batches"]
    assert watcher["max_active_runs"] == 1


def test_distil_runs_as_a_pod_when_configured(tmp_path):
    batch = _describe(tmp_path, VIDCIL_DISTIL_ON="kubernetes")["dags"]["vidcil_batch"]
    assert batch["types"]["distil"] == "KubernetesPodOperator"
    assert batch["down"]["extract_keyframes"] == ["distil"] and batch["down"]["distil"] == ["evaluate"]


@pytest.mark.e2e
def test_airflow_dags_test_runs_a_real_batch_end_to_end(tmp_path):
    project, home = tmp_path / "project", tmp_path / "airflow"
    make_project(project)
    env = airflow_env(project, home)
    run(["vidcil", "generate"], project, env)
    run(["airflow", "db", "migrate"], project, env)
    run(["airflow", "dags", "reserialize"], project, env)
    done = subprocess.run(["airflow", "dags", "test", "vidcil_batch", "-c", json.dumps({"batch_id": "b000"})],
                          cwd=project, env=env, capture_output=True, text=True, timeout=900)
    log = done.stdout + done.stderr
    assert done.returncode == 0 and "state=success" in log, log[-5000:]

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("vidcil-video-classifier", "champion")
    assert champion.tags["vidcil.batch_id"] == "b000" and champion.tags["vidcil.decision"] == "promoted"
    assert json.loads((project / "runs/b000/promote.json").read_text())["decision"] == "promoted"
    # The same batch again: nothing pending, the run skips; no second version.
    again = subprocess.run(["airflow", "dags", "test", "vidcil_batch", "-c", json.dumps({"batch_id": "b000"})],
                           cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "nothing pending among b000 (promoted)" in again.stdout + again.stderr
    assert len(client.search_model_versions("name = 'vidcil-video-classifier'")) == 1

    # A batch set aside: a task of it fails at once, without retries, saying why; a run skips it, saying why.
    run(["vidcil", "step", "validate", "b001"], project, env)
    run(["vidcil", "retire", "b001", "--reason", "labels swapped by the vendor"], project, env)
    task = subprocess.run([sys.executable, "-c", RUN_TASK, "distil", "b001"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert "AirflowFailException: batch b001 is retired (labels swapped by the vendor)" in task.stdout, task.stderr[-3000:]
    skipped = subprocess.run(["airflow", "dags", "test", "vidcil_batch", "-c", json.dumps({"batch_id": "b001"})],
                             cwd=project, env=env, capture_output=True, text=True, timeout=900)
    log = skipped.stdout + skipped.stderr
    assert skipped.returncode == 0 and "batch b001 is retired: labels swapped by the vendor" in log
    assert "nothing pending among b001 (retired)" in log


# Every Airflow task is a process of its own: one that reads no model must not pay torch's import.
LIGHT_STEPS = """
import sys
from vidcil.pipeline.runner import run_step
from vidcil.pipeline.spec import PIPELINE
for name in ("land", "validate", "extract_keyframes", "gates", "promote", "hold"):
    PIPELINE.step(name).load()
heavy = sorted(m for m in ("torch", "torchvision") if m in sys.modules)
assert not heavy, f"importing the steps that read no model imported {heavy}"
"""


def test_a_task_that_reads_no_model_starts_without_importing_torch():
    done = subprocess.run([sys.executable, "-c", LIGHT_STEPS], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
