"""The further methods through the real pipeline (MLflow on SQLite, DVC, GX, real mp4 files): a
compressed student reusing the champion's frozen NeXtVLAD encoder, with dynamic loss weights and
DER++'s logit replay (logits stored with the memory)."""

from __future__ import annotations

import mlflow
import pytest
import torch

from tests.conftest import tiny_params
from vidcil.io import mlflow_registry
from vidcil.io.moving_digits import BatchSpec, generate_stream
from vidcil.io.store import Store
from vidcil.pipeline.runner import run_stream

pytestmark = pytest.mark.e2e

SPECS = [BatchSpec("b000", ("slide_right", "zoom_in"), train_per_class=4, test_per_class=2),
         BatchSpec("b001", ("slide_left", "zoom_out"), train_per_class=4, test_per_class=2)]


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        root = tmp_path_factory.mktemp("methods")
        generate_stream(root / "landing", SPECS, seed=2, n_frames=8, size=32)
        params = tiny_params(
            root, model={"arch": "resnet18", "head": {"kind": "nextvlad", "hidden": 32, "clusters": 4, "groups": 4}},
            student={"arch": "mobilenet_v3_large", "reuse_encoder": True},
            distil={"kind": "encoder", "stages": ["encoder"], "distances": {"l2": 1.0, "cosine": 1.0}},
            # b001's student is another architecture: it trains epochs_first (3) epochs, not epochs (2)
            train={"epochs_first": 3, "epochs": 2, "loss_weighting": {"kind": "dynamic"}, "logit_replay": 0.2})
        yield params, run_stream(params)


def test_the_compressed_student_is_the_champion_and_keeps_the_teachers_encoder(stream):
    params, results = stream
    name = params.mlflow.model_name
    first, second = (mlflow_registry.load_version(name, str(v))[0] for v in (1, 2))
    champion = mlflow_registry.version_by_alias(name, "champion")
    assert [r["decision"] for r in results] == ["promoted", "promoted"]
    assert str(champion.version) == "2" and mlflow_registry.tag(champion, "batch_id") == "b001"
    assert first.arch == "resnet18" and second.arch == "mobilenet_v3_large"
    assert second.head.frame_dim == 512  # the student's 960 channels projected to the encoder's input
    teacher_encoder, student_encoder = first.head.encoder.state_dict(), second.head.encoder.state_dict()
    assert teacher_encoder.keys() == student_encoder.keys()
    assert all(torch.equal(teacher_encoder[k], student_encoder[k]) for k in teacher_encoder)  # frozen, bit for bit
    assert second.feature_extractor_parameters() < first.feature_extractor_parameters()


def test_dynamic_loss_weights_are_logged_epoch_by_epoch(stream):
    params, _ = stream
    version = mlflow.MlflowClient().get_model_version(params.mlflow.model_name, "2")
    history = {k: [m.value for m in sorted(mlflow.MlflowClient().get_metric_history(version.run_id, f"train_weight_{k}"),
                                           key=lambda m: m.step)] for k in ("ce", "encoder", "logit_replay")}
    assert all(h[:2] == [1.0, 1.0] for h in history.values())  # the first two epochs: fixed
    assert len(history["ce"]) == 3 and history["ce"][2] != 1.0  # then from the losses' descent rates
    assert sum(h[2] for h in history.values()) == pytest.approx(3.0)  # K tasks: weights sum to K


def test_the_memory_stores_the_champions_logits_and_the_student_replays_them(stream):
    params, _ = stream
    entries = Store(params.paths.store).memory("b001", params.memory.budget_bytes, 0.0).entries
    assert len(entries) and all(len(z) == 2 for z in entries["logits"])  # b000's two classes, as v1 saw them
    version = mlflow.MlflowClient().get_model_version(params.mlflow.model_name, "2")
    replayed = mlflow.MlflowClient().get_metric_history(version.run_id, "train_logit_replay")
    weights = mlflow.MlflowClient().get_metric_history(version.run_id, "train_weight_logit_replay")
    assert len(replayed) == 3 and all(m.value > 0 for m in replayed)  # a term of its own, weighed like the others
    assert len(weights) == 3
