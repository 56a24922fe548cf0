"""Camera-like video end to end: mixed sizes and containers train, and a killed distil resumes."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys

import pytest
import yaml

from tests.conftest import tiny_params
from vidcil.io import mlflow_registry
from vidcil.io.moving_digits import BatchSpec, generate_stream
from vidcil.io.realistic import RealisticClip, write_clip
from vidcil.io.inputs import frame_cache
from vidcil.pipeline.runner import run_batch, run_step
from vidcil.io.store import Store
from vidcil.pipeline.state import read_output

pytestmark = pytest.mark.e2e

# (width, height, container): landscape SD, 720p, portrait phone video
FORMATS = [(320, 240, "mp4"), (1280, 720, "mkv"), (360, 640, "webm")]


def _mixed_batch(folder, classes=("slide_right", "zoom_in"), train=3, test=2):
    rows, n = [], 0
    for c, motion in enumerate(classes):
        for split, count in (("train", train), ("test", test)):
            for i in range(count):
                w, h, ext = FORMATS[n % len(FORMATS)]
                video = f"{split}/{motion}/{i}.{ext}"
                write_clip(folder / video, RealisticClip(video, motion, split, (7, c, i, int(split == "test")),
                                                         w, h, fps=12, seconds=1.5, container=ext))
                rows.append({"video": video, "label": motion, "split": split})
                n += 1
    with open(folder / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["video", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)


def test_a_batch_of_mixed_sizes_and_containers_trains_evaluates_registers_and_promotes(tmp_path):
    _mixed_batch(tmp_path / "landing" / "b000")
    params = tiny_params(tmp_path, data={"input_size": 48, "short_side": 56, "num_workers": 2},
                         paths={"landing": str(tmp_path / "landing")})
    result = run_batch(params, "b000")
    assert result["decision"] == "promoted"
    manifest = Store(params.paths.store).manifest("b000")
    assert {(w, h) for w, h in zip(manifest["width"], manifest["height"])} == {(320, 240), (1280, 720), (360, 640)}
    assert {v.rsplit(".", 1)[1] for v in manifest["video"]} == {"mp4", "mkv", "webm"}
    # Every accepted video is in the cache at the working resolution: short side 56, even sides.
    cache = frame_cache(params)
    shapes = {cache.frames(params.paths.store / "batches" / "b000" / v, s).shape[1:3]
              for v, s in zip(manifest["video"], manifest["sha256"])}
    assert shapes == {(56, 74), (56, 100), (100, 56)} and cache.decodes == 0  # filled by validation
    trained = read_output(params, "b000", "distil")
    assert trained["epochs"] == params.train.epochs_first and trained["train_clips"] == 6
    champ = mlflow_registry.version_by_alias(params.mlflow.model_name, "champion")
    assert mlflow_registry.tag(champ, "batch_id") == "b000"
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{params.mlflow.model_name}@champion")
    inputs = model.metadata.get_input_schema().inputs[0]
    assert tuple(inputs.shape) == (-1, 4, 3, 48, 48)  # what the model is served: the input size


def test_a_distil_killed_after_its_first_epoch_resumes_at_the_second(tmp_path):
    landing = tmp_path / "landing"
    generate_stream(landing, [BatchSpec("b000", ("slide_right", "zoom_in"), 6, 2)], seed=3, n_frames=8, size=32)
    params = tiny_params(tmp_path, train={"epochs_first": 4}, paths={"landing": str(landing)})
    project = tmp_path / "params.yaml"
    project.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    for step in ("validate", "select_exemplars", "extract_keyframes"):
        run_step(params, step, "b000")

    vidcil = [sys.executable, "-m", "vidcil.cli", "--params", str(project), "step", "distil", "b000"]
    proc = subprocess.Popen(vidcil, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=tmp_path)
    lines = []
    for line in proc.stderr:  # plain progress lines: stderr is a pipe, not a terminal
        lines.append(line)
        if "epoch 1/4" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(lines)
    assert not (params.paths.runs / "b000" / "distil.json").exists()

    out = run_step(params, "distil", "b000")
    assert out["resumed_from_epoch"] == 1 and out["epochs"] == 4 and len(out["history"]) == 4
    per_epoch = out["history"][0]["steps"]
    assert out["optimizer_steps"] == 4 * per_epoch  # epochs 2-4 ran here, epoch 1 came from the checkpoint
    again = run_step(params, "distil", "b000")  # a finished distil rerun (an Airflow retry): nothing to train
    assert again["reused"] and again["optimizer_steps"] == out["optimizer_steps"]
    assert again["weights_sha256"] == out["weights_sha256"]  # the same model, not retrained
    for step in ("evaluate", "register", "gates", "promote"):
        run_step(params, step, "b000")
    versions = mlflow_registry.client().search_model_versions(f"name = '{params.mlflow.model_name}'")
    assert len(versions) == 1
    assert not (params.paths.runs / "b000" / "distil_checkpoint.pt").exists()  # decided: no longer needed
