"""benchmarks/joint_learner.py: each model choice trained jointly on a real stream, as the learner trains a batch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vidcil.config import Params
from vidcil.experiments.benchmark import bundled_stream, quick_params

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "joint_learner.py"


def test_every_model_choice_is_trained_and_scored_on_the_dots_stream(tmp_path):
    landing = bundled_stream(quick_params(Params()), True, tmp_path / "dots", "dots")
    (tmp_path / "params.yaml").write_text(
        "train: {epochs_first: 2}\nexperiments: {input_size: 32, num_segments: 4}\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--landing", str(landing), "--models", "tsm_r18_diff", "single_frame",
         "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["model"]: r for r in json.loads((tmp_path / "out" / "results.json").read_text())["rows"]}
    assert (rows["tsm_r18_diff"]["input"], rows["tsm_r18_diff"]["frames"]) == ("diff", 4)
    assert (rows["single_frame"]["input"], rows["single_frame"]["frames"]) == ("rgb", 1)  # the control
    for r in rows.values():
        assert r["classes"] == 6 and r["train_clips"] == 6 * 5 + 6 * 4
        assert 0 <= r["accuracy"]["mean"] <= 1 and r["steps"] > 0
    assert "epoch 1/2 at most" in done.stderr  # progress, a plain line per epoch
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| tsm_r18_diff (resnet18) | 4 | diff |" in table and "| single_frame (resnet18) | 1 | rgb |" in table
