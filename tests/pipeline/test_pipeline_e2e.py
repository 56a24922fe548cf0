"""Three tiny batches through the real pipeline: real mp4 files, real MLflow on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from tests.conftest import tiny_params
from vidcil.io import mlflow_registry
from vidcil.io.moving_digits import BatchSpec, generate_stream
from vidcil.io.contract import content_hash
from vidcil.io.inputs import clip_dataset
from vidcil.io.memory_store import KeyframeMemory
from vidcil.pipeline.runner import run_batch, run_stream, stream_report
from vidcil.io.store import Store
from vidcil.pipeline.state import read_output
from vidcil.core.training import predict_proba

pytestmark = pytest.mark.e2e

SPECS = [
    BatchSpec("b000", ("slide_right", "zoom_in"), train_per_class=6, test_per_class=3),
    BatchSpec("b001", ("slide_left", "zoom_out"), train_per_class=6, test_per_class=3),
    # New footage of known classes only (domain shift, no new class).
    BatchSpec("b002", ("slide_right", "slide_left"), train_per_class=4, test_per_class=2, noise=0.07),
]


@pytest.fixture(scope="session")
def landing(tmp_path_factory):
    root = tmp_path_factory.mktemp("landing")
    generate_stream(root, SPECS, seed=1, n_frames=8, size=32)
    return root


def _params(root, landing, **overrides):
    params = tiny_params(root, **overrides)
    return params.model_copy(update={"paths": params.paths.model_copy(update={"landing": landing})})


@pytest.fixture(scope="module")
def stream(tmp_path_factory, landing):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        root = tmp_path_factory.mktemp("stream")
        params = _params(root, landing)
        results = run_stream(params)
        yield params, results


def _version(params, alias):
    return mlflow_registry.version_by_alias(params.mlflow.model_name, alias)


def test_every_batch_is_registered_and_the_last_is_champion(stream):
    params, results = stream
    assert [r["decision"] for r in results] == ["promoted"] * 3
    champ = _version(params, "champion")
    assert mlflow_registry.tag(champ, "batch_id") == "b002"
    assert _version(params, "challenger").version == champ.version


def test_champion_carries_its_lineage(stream):
    params, _ = stream
    store = Store(params.paths.store)
    champ = _version(params, "champion")
    tags = {k.removeprefix("vidcil."): v for k, v in champ.tags.items()}
    assert tags["data_hash"] == content_hash(store.manifest("b002"))
    # Data versions are DVC's: the md5s in the .dvc files next to the data, pushed to the remote.
    def dvc_md5(dvc_file):
        return yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"]

    assert tags["data_version"] == dvc_md5(store.batches_dir / "b002.dvc")
    assert tags["memory_version"] == dvc_md5(store.memory_dir / "b002.dvc")
    assert tags["test_index_version"] == dvc_md5(store.root / "test_index.csv.dvc")
    remote = store.root.parent / "dvc-remote" / "files" / "md5"
    for key in ("data_version", "memory_version", "test_index_version"):
        assert (remote / tags[key][:2] / tags[key][2:]).is_file(), f"{key} not pushed to the remote"
    assert tags["memory_hash"] == KeyframeMemory.load(store.memory_dir / "b002").content_hash
    assert len(tags["code_version"].removesuffix("-dirty")) == 40
    teacher = mlflow_registry.client().get_model_version(params.mlflow.model_name, tags["teacher_version"])
    assert mlflow_registry.tag(teacher, "batch_id") == "b001"
    assert tags["decision"] == "promoted" and tags["previous_champion"] == str(teacher.version)
    run = mlflow.get_run(champ.run_id)
    assert {"accuracy_all_seen", "mean_forgetting", "memory_bytes", "optimizer_steps"} <= set(run.data.metrics)
    # Training logged its epochs live into the same run the model version points at.
    trained = read_output(params, "b002", "distil")
    assert trained["run_id"] == champ.run_id
    losses = mlflow.MlflowClient().get_metric_history(champ.run_id, "train_loss")
    assert [m.step for m in losses] == list(range(trained["epochs"]))
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(champ.run_id, "plots")}
    assert artifacts == {"plots/accuracy_matrix.png", "plots/accuracy_memory_vs_batch.png", "plots/confusion_matrix.png"}
    # Per-class accuracy of every class seen so far, and the batch as the run's dataset (digest: DVC's md5).
    classes = json.loads(tags["class_names"])
    assert {f"accuracy_class/{c}" for c in classes} <= set(run.data.metrics)
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "batch b002" and dataset.dataset.digest == tags["data_version"][:36]
    # One line in the registry UI saying what the version is and why it was decided so.
    assert champ.description.startswith("batch b002: accuracy ") and champ.description.endswith(
        "promoted (all gates passed)")


def test_model_is_logged_from_code_and_loads_without_unpickling(stream, monkeypatch):
    params, _ = stream
    champ = _version(params, "champion")
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{params.mlflow.model_name}/{champ.version}"))
    assert not list(local.rglob("*.pkl"))  # no pickled python_model
    assert "code_model" in (local / "MLmodel").read_text()
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    model = mlflow.pyfunc.load_model(str(local))
    example = np.zeros((1, *model.metadata.get_input_schema().inputs[0].shape[1:]), dtype=np.float32)
    probs = model.predict(example)
    assert probs.shape == (1, len(json.loads(mlflow_registry.tag(champ, "class_names"))))
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_accuracy_matrix_row_of_batch_0_after_batch_1_is_measured(stream):
    params, _ = stream
    record = stream_report(params, "b001")
    assert record["columns"] == ["b000", "b001"]
    assert len(record["matrix"]) == 2 and len(record["matrix"][0]) == 1
    # Recompute A[1, 0] independently: the b001 model on b000's test videos.
    store = Store(params.paths.store)
    version = mlflow_registry.version_for_batch(params.mlflow.model_name, "b001")
    model, config = mlflow_registry.load_version(params.mlflow.model_name, version)
    data = clip_dataset(params, store.refs(store.rows(["b000"], "test"), config["class_names"]), train=False)
    expected = float((predict_proba(model, data).argmax(1) == data.labels).mean())
    assert record["matrix"][1][0] == pytest.approx(expected)
    assert record["batches"][1]["forgetting_first"] == pytest.approx(record["matrix"][0][0] - expected)


def test_memory_bytes_are_what_is_on_disk_and_every_old_class_is_kept(stream):
    params, _ = stream
    folder = Store(params.paths.store).memory_dir / "b002"
    on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    out = read_output(params, "b002", "extract_keyframes")
    assert out["memory_bytes"] == on_disk <= params.memory.budget_bytes
    champ = _version(params, "champion")
    assert int(mlflow_registry.tag(champ, "memory_bytes")) == on_disk
    assert set(out["per_class"]) == {"slide_right", "zoom_in", "slide_left", "zoom_out"}
    assert out["batches"] == ["b000", "b001"]
    # What the memory (fit, the default) chose per class, as the step reports it: at most the frames the
    # model samples per video.
    chosen, most = out["chosen"], params.model.num_segments
    assert set(chosen) == set(out["per_class"]) and out["unrepresented"] == {}
    assert all(c["videos"] == out["per_class"][k] and 1 <= c["frames"] <= most * c["videos"] and c["sides"]
               for k, c in chosen.items())


def test_a_batch_of_known_classes_keeps_the_classifier_width(stream):
    params, _ = stream
    names = [json.loads(mlflow_registry.tag(mlflow_registry.version_for_batch(params.mlflow.model_name, b), "class_names"))
             for b in ("b000", "b001", "b002")]
    assert names[0] == ["slide_right", "zoom_in"]
    assert names[1] == names[2] == ["slide_right", "zoom_in", "slide_left", "zoom_out"]
    assert read_output(params, "b002", "validate")["new_classes"] == []


def test_registered_model_serves_through_pyfunc(stream):
    params, _ = stream
    model = mlflow.pyfunc.load_model(f"models:/{params.mlflow.model_name}@champion")
    clips = np.random.default_rng(0).random((2, 4, 3, 32, 32), dtype=np.float32)
    probs = model.predict(clips)
    assert probs.shape == (2, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_rerunning_a_done_batch_changes_nothing(stream):
    params, _ = stream
    client = mlflow_registry.client()
    before = [(v.version, v.tags) for v in client.search_model_versions(f"name = '{params.mlflow.model_name}'")]
    memory = Store(params.paths.store).memory_dir / "b001"
    stamps = {p: p.stat().st_mtime_ns for p in memory.rglob("*")}
    champion = _version(params, "champion").version
    result = run_batch(params, "b001")
    assert result["skipped"] and result["decision"] == "promoted"
    after = [(v.version, v.tags) for v in client.search_model_versions(f"name = '{params.mlflow.model_name}'")]
    assert sorted(after) == sorted(before)
    assert {p: p.stat().st_mtime_ns for p in memory.rglob("*")} == stamps
    assert _version(params, "champion").version == champion


def test_a_held_batch_keeps_the_champion_and_its_classes_are_learnt_next(tmp_path, landing):
    normal = _params(tmp_path, landing)
    # Perfect accuracy on every seen and every new test video: out of reach for 2 tiny epochs.
    strict = _params(tmp_path, landing, gates={"min_accuracy": 1.0, "min_new_accuracy": 1.0})
    run_batch(normal, "b000")
    held = run_batch(strict, "b001")
    assert held["decision"] == "held" and "min_accuracy" in held["reasons"][0]
    name = normal.mlflow.model_name
    v1 = mlflow_registry.version_for_batch(name, "b001")
    assert mlflow_registry.tag(v1, "decision") == "held"
    assert "min_accuracy" in json.loads(mlflow_registry.tag(v1, "gate_reasons"))[0]
    assert mlflow_registry.tag(_version(normal, "champion"), "batch_id") == "b000"  # did not move

    run_batch(normal, "b002")
    champ = _version(normal, "champion")
    assert mlflow_registry.tag(champ, "batch_id") == "b002"
    assert mlflow_registry.tag(champ, "pending_batches") == "b001,b002"  # b001's data was trained on
    assert {"slide_left", "zoom_out"} <= set(json.loads(mlflow_registry.tag(champ, "class_names")))
    record = stream_report(normal, "b002")
    assert [b["promoted"] for b in record["batches"]] == [True, False, True]
