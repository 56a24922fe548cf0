"""benchmarks/merge_benchmarks.py: runs made apart, one table, the targets computed again from all of them."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "merge_benchmarks.py"
spec = importlib.util.spec_from_file_location("merge_benchmarks", SCRIPT)
merge_benchmarks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(merge_benchmarks)

STREAM = {"landing": "data/s", "batches": ["b0", "b1", "b2"], "classes": ["a", "b", "c"],
          "batch_classes": [["a", "b"], ["c"], ["a", "b", "c"]], "rejected": {}, "train_videos": [8, 4, 12],
          "test_videos": [4, 2, 6]}


def _run(final: float, old_after_b1: float) -> dict:
    matrix = [[0.9], [old_after_b1, 0.8], [0.85, final]]
    metrics = {"final_accuracy": final, "average_incremental_accuracy": final, "forgetting_first": 0.9 - old_after_b1,
               "mean_forgetting": 0.9 - old_after_b1, "backward_transfer": old_after_b1 - 0.9, "memory_bytes": 1000,
               "optimizer_steps": 30, "wall_seconds": 1.0}
    batches = [{"batch_id": b, "accuracy_all_seen": row[-1], "curve": []} for b, row in zip(STREAM["batches"], matrix)]
    return {"metrics": metrics, "matrix": matrix, "batches": batches}


def _result(runs: dict, seeds=(0, 1, 2)) -> dict:
    return {"stream": STREAM, "settings": {"memory": {}, "device": "cpu"}, "seeds": list(seeds), "wall_seconds": 10.0,
            "runs": {m: {str(s): r for s, r in by_seed.items()} for m, by_seed in runs.items()}}


def test_runs_made_apart_give_the_table_and_targets_one_run_would(tmp_path):
    ours = _result({"tsd": {s: _run(0.90 + s / 100, 0.8 + s / 100) for s in range(3)}})
    theirs = _result({"replay": {s: _run(0.80 + s / 100, 0.3 + s / 100) for s in range(3)}})
    for name, r in (("a", ours), ("b", theirs)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "benchmark.json").write_text(json.dumps(r))
    assert merge_benchmarks.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    merged = json.loads((tmp_path / "m" / "benchmark.json").read_text())
    assert sorted(merged["runs"]) == ["replay", "tsd"] and merged["wall_seconds"] == 20.0
    beat, forgetting = merged["targets"][:2]
    assert beat["met"] and "+10.0 points" in beat["figure"]  # 0.91 vs 0.81, every seed 10 points apart
    assert "after b1" in forgetting["target"] and forgetting["met"]  # 0.09 vs 0.59 before b2 re-teaches all
    assert "| replay (CE only) |" in (tmp_path / "m" / "benchmark.md").read_text()


def test_other_seeds_another_stream_or_a_method_twice_are_refused():
    a = _result({"tsd": {s: _run(0.9, 0.8) for s in range(3)}})
    with pytest.raises(ValueError, match="not the same seeds"):
        merge_benchmarks.merge([a, _result({"replay": {0: _run(0.8, 0.3)}}, seeds=(0,))])
    with pytest.raises(ValueError, match="not the same stream"):
        merge_benchmarks.merge([a, _result({"replay": {}}) | {"stream": STREAM | {"landing": "data/other"}}])
    with pytest.raises(ValueError, match="more than one input: tsd"):
        merge_benchmarks.merge([a, a])


def test_a_stopped_benchmark_gives_the_table_of_the_seeds_every_method_finished(tmp_path):
    partial = _result({"tsd": {s: _run(0.9, 0.8) for s in range(3)},
                       "replay": {s: _run(0.8, 0.3) for s in range(2)},  # killed during replay's seed 2
                       "mem_random": {0: _run(0.85, 0.7)}}) | {"ablation": ["mem_random"]}  # the ablation: seed 0
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "partial.json").write_text(json.dumps(partial))
    assert merge_benchmarks.main([str(tmp_path / "a"), "--out", str(tmp_path / "m")]) == 0
    merged = json.loads((tmp_path / "m" / "benchmark.json").read_text())
    assert merged["seeds"] == [0, 1] and sorted(merged["runs"]) == ["replay", "tsd"]
    assert all(sorted(r) == ["0", "1"] for r in merged["runs"].values())
    assert merged["merged_from"][0]["stopped_early"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "partial.json").write_text(json.dumps(partial["runs"]))  # runs only, as before
    with pytest.raises(ValueError, match="before 2026-12-07"):
        merge_benchmarks.load(tmp_path / "old")
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "partial.json").write_text(json.dumps(_result({"tsd": {0: _run(0.9, 0.8)}, "replay": {}})))
    with pytest.raises(ValueError, match="no seed finished by every method"):
        merge_benchmarks.load(tmp_path / "none")


def test_a_row_run_under_an_earlier_default_is_renamed_and_a_5_seed_run_cut_to_3(tmp_path):
    five = _result({"replay": {s: _run(0.80, 0.3) for s in range(5)}}, seeds=range(5))
    old_default = _result({"tsd": {s: _run(0.85, 0.5) for s in range(3)}})
    new_default = _result({"tsd_balanced_t02": {s: _run(0.9, 0.8) for s in range(3)}})
    for name, r in (("five", five), ("old", old_default), ("new", new_default)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "benchmark.json").write_text(json.dumps(r))
    assert merge_benchmarks.main([str(tmp_path / "old"), "--rename", "tsd=tsd_plain", "--out", str(tmp_path / "o")]) == 0
    assert merge_benchmarks.main([str(tmp_path / "new"), "--rename", "tsd_balanced_t02=tsd",
                                  "--out", str(tmp_path / "n")]) == 0
    assert merge_benchmarks.main([str(tmp_path / p) for p in ("five", "o", "n")]
                                 + ["--seeds", "0", "1", "2", "--out", str(tmp_path / "m")]) == 0
    merged = json.loads((tmp_path / "m" / "benchmark.json").read_text())
    assert sorted(merged["runs"]) == ["replay", "tsd", "tsd_plain"] and merged["seeds"] == [0, 1, 2]
    assert sorted(merged["runs"]["replay"]) == ["0", "1", "2"]  # seeds 3 and 4 left out
    assert merged["merged_from"][2]["merged_from"][0]["renamed"] == {"tsd_balanced_t02": "tsd"}
    assert merged["targets"][0]["figure"].startswith("0.900")  # the renamed row is the default's
    with pytest.raises(ValueError, match=r"did not run seed\(s\) 4"):
        merge_benchmarks.merge([old_default], seeds=[0, 4])
    with pytest.raises(ValueError, match="not a method: tsd_old"):
        merge_benchmarks.merge([old_default], rename={"tsd": "tsd_old"})
    with pytest.raises(SystemExit):
        merge_benchmarks.main([str(tmp_path / "old"), "--rename", "tsd", "--out", str(tmp_path / "x")])


def test_a_full_run_with_its_ablation_and_joint_can_be_cut_and_renamed(tmp_path):
    curve = [[10, 0.5], [20, 0.9]]
    full = _result({"tsd": {s: _run(0.9, 0.8) for s in range(3)}, "joint": {s: _run(0.95, 0.9) for s in range(3)},
                    "replay": {s: _run(0.8, 0.3 + s / 100) for s in range(3)}, "mem_random": {0: _run(0.85, 0.7)}})
    full["ablation_seeds"] = [0]
    for r in full["runs"]["tsd"].values():
        for b in r["batches"]:
            b["curve"] = curve
    cut = merge_benchmarks.merge([full], seeds=[0, 1])  # mem_random ran seed 0 only: left out, not refused
    assert sorted(cut["runs"]) == ["joint", "replay", "tsd"] and cut["compute"]
    renamed = merge_benchmarks.merge([full], rename={"tsd": "tsd_plain"})  # joint stays, with no default beside it
    assert "tsd" not in renamed["runs"] and renamed["compute"] == []
    md = (lambda out: (merge_benchmarks.write(cut, out), (out / "benchmark.md").read_text())[1])(tmp_path / "md")
    paired = md[md.index("minus replay"):md.index("## Compute")]
    assert "| the default (params.yaml)" in paired and "| +0.100 ± " in paired  # 0.9 - 0.8 on both seeds
