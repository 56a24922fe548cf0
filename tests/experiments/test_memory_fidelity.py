"""benchmarks/memory_fidelity.py: each frame policy's exemplars scored by the model that chose them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vidcil.config import Params
from vidcil.experiments.benchmark import bundled_stream, quick_params

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "memory_fidelity.py"


def test_each_policy_is_scored_on_its_shards_and_on_the_full_videos(tmp_path):
    landing = bundled_stream(quick_params(Params()), True, tmp_path / "dots", "dots")
    (tmp_path / "params.yaml").write_text(
        "train: {epochs_first: 2}\nexperiments: {input_size: 32, num_segments: 4, memory_budget_bytes: 40000}\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--landing", str(landing), "--policies", "fit", "fit_f2",
         "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    fit, f2 = result["per_seed"]["fit"]["0"], result["per_seed"]["fit_f2"]["0"]
    assert result["num_segments"] == 4 and result["budget_bytes"] == 40000
    assert 2 < fit["frames_per_video"] <= 4  # the default: as many frames as the model samples
    assert f2["frames_per_video"] <= 2 and f2["videos"] >= fit["videos"]  # fewer frames, more videos
    for r in (fit, f2):
        assert 0 < r["bytes"] <= 40000 and 0 <= r["acc_shards"] <= 1 and 0 <= r["acc_full"] <= 1
    assert "| fit_f2 |" in (tmp_path / "out" / "results.md").read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.json", "results.md"]  # scratch removed
