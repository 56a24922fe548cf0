"""`vidcil benchmark --quick`: every method and memory on a tiny real-video stream, end to end."""

import json
import math
import re

import pytest

from vidcil.config import Params
from vidcil.experiments.benchmark import bundled_stream, quick_params, run_benchmark
from vidcil.experiments.methods import ABLATIONS, METHODS
from vidcil.experiments.report import at_batch, last_new_class_batch
from vidcil.experiments.runner import load_stream
from vidcil.io.inputs import frame_cache
from vidcil.io.validation import validation_rules

pytestmark = pytest.mark.e2e


def test_quick_benchmark_runs_every_method_on_a_user_stream_and_leaves_out_a_rejected_batch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = Params()
    landing = bundled_stream(quick_params(params), True, tmp_path / "landing")
    bad = landing / "b001_late"  # sorts between b001 and b002; lists a video that is not there
    bad.mkdir()
    (bad / "labels.csv").write_text("video,label,split\nmissing.mp4,slide_left,train\n")

    result = run_benchmark(params, tmp_path / "out", landing=landing, quick=True)

    assert result["stream"]["batches"] == ["b000", "b001", "b002"]
    assert "b001_late" in result["stream"]["rejected"]
    budget = quick_params(params).memory.budget_bytes
    for method in METHODS + ABLATIONS:
        run = result["runs"][method.name][0]
        assert all(math.isfinite(v) for v in run["metrics"].values()), method.name
        assert [len(r) for r in run["matrix"]] == [1, 2, 3]  # accuracy on every batch seen so far
        memory = run["metrics"]["memory_bytes"]
        if method.replay:
            assert 0 < memory <= budget * method.budget_factor, method.name
    runs = result["runs"]
    assert runs["finetune"][0]["metrics"]["memory_bytes"] == 0
    videos = sum(p.stat().st_size for p in landing.glob("b00[0-2]/train/*/*.mp4"))
    assert runs["joint"][0]["metrics"]["memory_bytes"] == videos  # joint keeps every training video
    # The same batch-0 model starts every method; joint retrains from scratch, so it takes more steps.
    assert len({r[0]["batches"][0]["row"][0] for r in runs.values()}) == 1
    assert runs["joint"][0]["metrics"]["optimizer_steps"] > runs["tsd"][0]["metrics"]["optimizer_steps"]
    assert all(len(b["curve"]) == 1 for b in runs["tsd"][0]["batches"][1:])  # 1 epoch: one point each
    assert {r["batch_id"] for r in result["compute"]} == {"b001", "b002"}
    assert 0 <= result["single_frame"]["single_frame"]["mean"] <= 1

    out = tmp_path / "out"
    assert json.loads((out / "benchmark.json").read_text())["summary"].keys() == runs.keys()
    table = (out / "benchmark.md").read_text()
    for method in METHODS + ABLATIONS:
        assert f"| {method.title} |" in table
    assert "## Targets" in table and "## Compute" in table
    assert "## After b001, the last batch with new classes" in table  # b002 is the shift batch
    for plot in ("accuracy_vs_batch.png", "tsd_accuracy_matrix.png"):
        assert (out / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "partial.json").exists()


def test_a_folder_without_batches_is_refused_with_the_contract(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        load_stream(tmp_path, validation_rules(Params()), tmp_path / "reports", frame_cache(Params()))


def _result(batch_classes):
    return {"stream": {"batches": [f"b{k:03d}" for k in range(len(batch_classes))], "batch_classes": batch_classes}}


def test_the_state_before_a_batch_without_new_classes_is_found():
    assert last_new_class_batch(_result([["a", "b"], ["c"], ["a", "b", "c"]])) == 1
    assert last_new_class_batch(_result([["a", "b"], ["c"], ["d"]])) is None  # the final figures say it all
    assert last_new_class_batch(_result([["a", "b"], ["a", "b"]])) is None  # nothing new after batch 0
    assert last_new_class_batch({"stream": {"batches": ["b000", "b001"]}}) is None  # an older benchmark.json


def test_accuracy_and_forgetting_after_an_earlier_batch_come_from_the_matrix_up_to_it():
    run = {"matrix": [[0.9], [0.6, 1.0], [0.8, 0.9, 0.95]],
           "batches": [{"accuracy_all_seen": 0.9}, {"accuracy_all_seen": 0.75}, {"accuracy_all_seen": 0.88}]}
    other = {"matrix": [[0.9], [0.8, 0.9], [0.9, 0.9, 0.9]],
             "batches": [{"accuracy_all_seen": 0.9}, {"accuracy_all_seen": 0.85}, {"accuracy_all_seen": 0.9}]}
    stats = at_batch({"m": {0: run, 1: other}}, 1)["m"]
    assert stats["accuracy_all_seen"]["mean"] == pytest.approx(0.80)
    assert stats["forgetting_first"]["mean"] == pytest.approx((0.3 + 0.1) / 2)  # after batch 1, not batch 2
    assert stats["mean_forgetting"]["mean"] == pytest.approx(0.2)
    assert stats["mean_forgetting"]["n"] == 2


def test_a_budget_too_small_for_one_exemplar_names_the_method_batch_and_the_benchmark_setting(tmp_path, monkeypatch):
    import vidcil.experiments.benchmark as bench

    def tiny_budget(params):  # with a frame policy that cannot adapt (fit, the default, never refuses)
        quick = quick_params(params)
        fixed = quick.memory.model_copy(update={"budget_bytes": 500}).model_dump() | {
            "frames": {"kind": "keyframes", "threshold": 0.06}}
        return quick.model_copy(update={"memory": type(quick.memory).model_validate(fixed, context={"plugins": True})})

    monkeypatch.setattr(bench, "quick_params", tiny_budget)
    landing = bundled_stream(quick_params(Params()), True, tmp_path / "landing")
    with pytest.raises(ValueError, match=r"replay, seed 0, memory for b001: .*too little for one exemplar"
                                         r".*experiments\.memory_budget_bytes, now 500"):
        run_benchmark(Params(), tmp_path / "out", landing=landing, quick=True, ablation=False, single_frame=False)
    finished = json.loads((tmp_path / "out" / "partial.json").read_text())
    assert list(finished["runs"]["finetune"]) == ["0"]  # the runs before the failure are kept
    assert finished["stream"]["batches"][:2] == ["b000", "b001"] and finished["seeds"] == [0]  # a table's makings


def test_further_methods_run_as_the_pipeline_would_with_their_params(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params = Params()
    landing = bundled_stream(quick_params(params), True, tmp_path / "landing")
    names = ["tsd_dynamic", "tsd_nextvlad", "r50_to_mnv3_encoder", "r50_to_mnv3_matched", "mem_fit_f2"]
    result = run_benchmark(params, tmp_path / "out", landing=landing, quick=True, methods=names)

    assert list(result["runs"]) == names  # no ablation, no single-frame model
    # Off a terminal, one plain line per epoch; the count planned up front is the count trained
    # (a student of another architecture trains epochs_first epochs, as in the pipeline).
    lines = re.findall(r"\[vidcil\] benchmark seed 0 (\w+): epoch (\d+)/(\d+) of the benchmark", capsys.readouterr().err)
    assert [n for n in names if n in {m for m, _, _ in lines}] == names
    assert [int(d) for _, d, _ in lines] == list(range(1, len(lines) + 1)) and {t for _, _, t in lines} == {str(len(lines))}
    metrics = {n: result["runs"][n][0]["metrics"] for n in names}
    assert all(math.isfinite(v) for m in metrics.values() for v in m.values())
    assert metrics["tsd_nextvlad"]["final_hit_at_1"] == metrics["tsd_nextvlad"]["final_accuracy"]  # one label per clip
    # The compression students are MobileNetV3s: far fewer parameters than the ResNet-50 teacher's
    # 28 M; the one reusing the teacher's BiLSTM also carries its encoder and projection.
    assert metrics["r50_to_mnv3_matched"]["parameters"] < 6e6 < metrics["r50_to_mnv3_encoder"]["parameters"] < 12e6
    # One ResNet-50 batch-0 model for both compression runs, another (ResNet-18 + NeXtVLAD), another (ResNet-18).
    first = {n: result["runs"][n][0]["batches"][0]["row"][0] for n in names}
    assert first["r50_to_mnv3_encoder"] == first["r50_to_mnv3_matched"]
    table = (tmp_path / "out" / "benchmark.md").read_text()
    assert "## Further methods" in table and "| TSD, NeXtVLAD head |" in table and "| NME acc |" in table
    assert all(0 <= m["final_nme_accuracy"] <= 1 for m in metrics.values())
    assert "## Memory ablation" in table and "| confident videos -> fit, at most 2 frames per video |" in table
    with pytest.raises(ValueError, match="unknown methods \\['nope'\\]"):
        run_benchmark(params, tmp_path / "out2", landing=landing, quick=True, methods=["nope"])


def test_a_row_learns_the_same_whatever_ran_before_it_and_whether_it_is_measured_every_epoch(tmp_path, monkeypatch):
    # tsd_balanced_t02 is the default's params spelled out: it runs after tsd, and only tsd is measured after
    # every epoch (CURVES). Both used to move the global RNG (the new classes' rows, dropout) and so the result.
    import vidcil.experiments.benchmark as bench

    def two_epochs(params):  # a later batch trains on after a measured epoch (quick: 1 epoch, nothing after)
        quick = quick_params(params)
        return quick.model_copy(update={"train": quick.train.model_copy(update={"epochs": 2})})

    monkeypatch.setattr(bench, "quick_params", two_epochs)
    monkeypatch.chdir(tmp_path)
    params = Params()
    landing = bundled_stream(quick_params(params), True, tmp_path / "landing")
    result = run_benchmark(params, tmp_path / "out", landing=landing, quick=True, methods=["tsd", "tsd_balanced_t02"])
    measured, plain = result["runs"]["tsd"][0], result["runs"]["tsd_balanced_t02"][0]
    assert any(b["curve"] for b in measured["batches"][1:]) and not any(b["curve"] for b in plain["batches"])
    assert measured["matrix"] == plain["matrix"]
    assert [b["steps"] for b in measured["batches"]] == [b["steps"] for b in plain["batches"]]
