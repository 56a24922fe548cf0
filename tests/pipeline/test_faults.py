"""Faults in the real pipeline (real mp4s, MLflow on SQLite, DVC): a SIGKILL inside distil, register and
promote, and a model retrained after it was registered. The rerun converges to the registry an
uninterrupted run leaves: one version per batch, no RUNNING run, no retraining of a finished distil,
and no decision on weights that were never evaluated."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import mlflow
import pytest
import torch
import yaml

from tests.conftest import tiny_params
from tests.io.test_validation import good_batch
from vidcil.io import mlflow_registry
from vidcil.pipeline.runner import run_batch, run_step
from vidcil.pipeline.state import read_output, run_dir

pytestmark = pytest.mark.e2e

STEPS_BEFORE_REGISTER = ("validate", "select_exemplars", "extract_keyframes", "distil", "evaluate")

# register in a fresh process, SIGKILLed from inside MLflow's model logging (where a kill left the run
# RUNNING and made the rerun retrain): no hook in vidcil, the kill is real.
KILLED_REGISTER = textwrap.dedent("""
    import os, signal, sys
    from vidcil.config import Params
    from vidcil.io import mlflow_registry
    from vidcil.pipeline.runner import run_step

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    mlflow_registry.log_model = killed
    run_step(Params.load(sys.argv[1]), "register", "b000")
""")


# The whole batch in a fresh process, SIGKILLed at the point argv[2] names (no hook in vidcil):
#   distil:  right after the first epoch's checkpoint is on disk (training resumes from it);
#   promote: right after the champion alias moved, before the decision is recorded.
KILLED_BATCH = textwrap.dedent("""
    import os, signal, sys
    from vidcil.config import Params
    from vidcil.core import training
    from vidcil.io import mlflow_registry
    from vidcil.pipeline.runner import run_batch

    def kill():
        os.kill(os.getpid(), signal.SIGKILL)

    save, set_tags = training._save, mlflow_registry.set_tags
    if sys.argv[2] == "distil":
        training._save = lambda state, path: (save(state, path), kill())
    else:
        mlflow_registry.set_tags = lambda name, v, tags: kill() if "decision" in tags else set_tags(name, v, tags)
    run_batch(Params.load(sys.argv[1]), "b000")
""")


def _registry(params) -> dict:
    """What a run leaves in the registry, without what differs between any two runs (ids, times)."""
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name(params.mlflow.experiment).experiment_id
    runs = client.search_runs([experiment])
    champion = mlflow_registry.version_by_alias(params.mlflow.model_name, mlflow_registry.CHAMPION)
    return {
        "versions": sorted((str(v.version), mlflow_registry.tag(v, "batch_id"), mlflow_registry.tag(v, "decision"),
                            mlflow_registry.tag(v, "previous_champion"), v.run_id in {r.info.run_id for r in runs})
                           for v in _versions(params)),
        "champion": str(champion.version) if champion else None,
        "running": [r.info.run_name for r in runs if r.info.status == "RUNNING"],
        "training runs": sorted(r.info.run_name for r in runs if "vidcil.step" not in r.data.tags
                                and r.info.status == "FINISHED"),
    }


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The registry after one batch that nothing interrupted."""
    root = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        params = tiny_params(root)
        good_batch(params.paths.landing / "b000", seed=0)
        assert run_batch(params, "b000")["decision"] == "promoted"
        return _registry(params)


@pytest.mark.parametrize("where", ["distil", "promote"])
def test_a_kill_inside_distil_or_promote_is_rerun_to_the_registry_an_uninterrupted_run_leaves(
        tmp_path, monkeypatch, uninterrupted, where):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = tiny_params(tmp_path)
    good_batch(params.paths.landing / "b000", seed=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    done = subprocess.run([sys.executable, "-c", KILLED_BATCH, str(tmp_path / "params.yaml"), where], cwd=tmp_path)
    assert done.returncode == -9  # SIGKILL
    mlflow_registry.configure(params.mlflow.tracking_uri, params.mlflow.experiment)
    if where == "distil":
        assert _versions(params) == [] and (run_dir(params, "b000") / "distil_checkpoint.pt").is_file()
    else:  # the alias moved, the decision is not recorded: the version must not be taken for the teacher
        (half,) = _versions(params)
        assert mlflow_registry.version_by_alias(params.mlflow.model_name, "champion").version == half.version
        assert not mlflow_registry.tag(half, "decision")

    out = run_batch(params, "b000")

    assert out["decision"] == "promoted"
    if where == "distil":
        assert read_output(params, "b000", "distil")["resumed_from_epoch"] == 1  # not trained from scratch
    else:
        assert read_output(params, "b000", "distil").get("reused") is True
    assert _registry(params) == uninterrupted


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = tiny_params(tmp_path)
    good_batch(params.paths.landing / "b000", seed=0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    for step in STEPS_BEFORE_REGISTER:
        run_step(params, step, "b000")
    return tmp_path, params


def _runs(params, status=None):
    experiment = mlflow.get_experiment_by_name(params.mlflow.experiment).experiment_id
    runs = mlflow.MlflowClient().search_runs([experiment], filter_string="attributes.run_name = 'b000'")
    runs = [r for r in runs if r.data.tags.get("vidcil.project") != "/elsewhere/runs"]
    return [r for r in runs if status is None or r.info.status == status]


def _versions(params):
    return mlflow.MlflowClient().search_model_versions(f"name = '{params.mlflow.model_name}'")


def test_a_kill_inside_register_is_rerun_without_retraining_and_leaves_one_version(project):
    root, params = project
    trained = read_output(params, "b000", "distil")
    done = subprocess.run([sys.executable, "-c", KILLED_REGISTER, str(root / "params.yaml")], cwd=root)
    assert done.returncode == -9  # SIGKILL
    assert [r.info.run_id for r in _runs(params, "RUNNING")] == [trained["run_id"]]  # what the kill left
    assert _versions(params) == []

    # Another project's live run on the same (shared) server and experiment: not this project's orphan.
    client = mlflow.MlflowClient()
    theirs = client.create_run(mlflow.get_experiment_by_name(params.mlflow.experiment).experiment_id,
                               tags={"vidcil.batch_id": "b000", "vidcil.project": "/elsewhere/runs"})

    out = run_batch(params, "b000")

    assert client.get_run(theirs.info.run_id).info.status == "RUNNING"
    client.set_terminated(theirs.info.run_id)
    assert out["decision"] == "promoted"
    assert read_output(params, "b000", "distil").get("reused") is True  # the finished model was kept
    assert read_output(params, "b000", "distil")["weights_sha256"] == trained["weights_sha256"]
    (version,) = _versions(params)
    assert version.run_id == trained["run_id"]  # registered in the run that trained it
    assert mlflow_registry.tag(version, "weights_sha256") == trained["weights_sha256"]
    assert _runs(params, "RUNNING") == []
    assert run_batch(params, "b000")["skipped"]  # and once more: nothing to do


def test_a_version_whose_weights_were_not_evaluated_is_discarded_never_decided(project):
    root, params = project
    run_step(params, "register", "b000")
    (stray,) = _versions(params)
    # The model is retrained after it was registered (a second writer before the lock, a rerun):
    folder = run_dir(params, "b000") / "model"
    weights = torch.load(folder / "state_dict.pt", weights_only=True)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}, folder / "state_dict.pt")

    with pytest.raises(RuntimeError, match="not the one evaluate measured .*run evaluate again"):
        run_step(params, "register", "b000")
    run_step(params, "evaluate", "b000")  # the new weights measured: the registered version is not them
    with pytest.raises(RuntimeError, match=f"version {stray.version} holds other weights .*run register again"):
        run_step(params, "gates", "b000")  # no decision on the stray
    out = run_step(params, "register", "b000")

    assert out["version"] != stray.version and not out["reused"]
    old = mlflow.MlflowClient().get_model_version(params.mlflow.model_name, stray.version)
    assert mlflow_registry.tag(old, "decision") == "discarded" and "not the model evaluated" in old.description
    assert mlflow_registry.version_for_batch(params.mlflow.model_name, "b000").version == out["version"]
    assert run_step(params, "gates", "b000")["passed"]
    assert run_step(params, "promote", "b000")["decision"] == "promoted"
    champion = mlflow_registry.version_by_alias(params.mlflow.model_name, mlflow_registry.CHAMPION)
    assert champion.version == out["version"]
