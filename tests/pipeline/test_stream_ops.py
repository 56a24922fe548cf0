"""A stream that cannot get stuck, on the real pipeline (real mp4s, MLflow on SQLite, DVC): a batch whose
training keeps failing is set aside after ``orchestration.max_attempts`` and the stream goes on; a batch
retired by hand leaves training, memory and the test index; a rollback moves ``champion`` back with a
trace, and the stream report says what serves now."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from tests.conftest import tiny_params
from tests.io.test_validation import good_batch
from vidcil import cli
from vidcil.io import mlflow_registry
from vidcil.io.contract import BatchRejected, BatchSetAside
from vidcil.io.store import Store
from vidcil.pipeline import operations, steps
from vidcil.pipeline.runner import print_table, run_step, run_stream, stream_report
from vidcil.pipeline.state import batch_status, read_output

pytestmark = pytest.mark.e2e


def _version(params, batch_id):
    return mlflow_registry.version_for_batch(params.mlflow.model_name, batch_id)


def _dvc_md5(params, batch_id):
    text = (Store(params.paths.store).batches_dir / f"{batch_id}.dvc").read_text()
    return next(line.split(":")[1].strip() for line in text.splitlines() if "md5:" in line)


def test_a_batch_whose_training_keeps_failing_is_set_aside_and_the_stream_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = tiny_params(tmp_path, orchestration={"max_attempts": 2})
    for i in range(3):
        good_batch(params.paths.landing / f"b00{i}", seed=i)
    real = steps.distil

    def distil(params, batch_id):  # the fault: b001 cannot be trained (e.g. it runs the GPU out of memory)
        if batch_id == "b001":
            raise RuntimeError("CUDA out of memory (injected)")
        return real(params, batch_id)

    monkeypatch.setattr(steps, "distil", distil)
    with pytest.raises(RuntimeError, match="injected"):  # attempt 1: the stream stops at b001
        run_stream(params)
    assert "distil of b001 failed (attempt 1 of 2); rerun to retry" in capsys.readouterr().err
    assert operations.attempts(params, "b001")["distil"]["failures"] == 1
    assert batch_status(params, "b001") == "pending"
    before = _dvc_md5(params, "b001")

    results = run_stream(params)  # attempt 2: set aside; b002 is learnt without it

    assert [(r["batch_id"], r["decision"]) for r in results] == [
        ("b000", "promoted"), ("b001", "failed"), ("b002", "promoted")]
    gone = Store(params.paths.store).retirement("b001")
    assert gone["kind"] == "failed" and "step distil failed 2 times; last: RuntimeError: CUDA out of memory" in gone["reason"]
    assert batch_status(params, "b001") == "failed" and _version(params, "b001") is None
    assert _dvc_md5(params, "b001") != before  # a new data version (with retired.json); the old stays in history
    trained = read_output(params, "b002", "distil")
    assert trained["pending_batches"] == ["b002"]  # b001's videos left the training set
    assert set(pd.read_csv(Store(params.paths.store).test_index)["batch_id"]) == {"b000", "b002"}
    assert read_output(params, "b002", "evaluate")["columns"] == ["b000", "b002"]
    (retire_run,) = mlflow.search_runs(filter_string="tags.`vidcil.step` = 'retire'", output_format="list")
    assert retire_run.data.tags["vidcil.kind"] == "failed" and retire_run.data.tags["vidcil.batch_id"] == "b001"
    with pytest.raises(BatchSetAside, match="b001 is failed .*new batch id"):  # no step runs for it again
        run_step(params, "distil", "b001")
    record = stream_report(params, "b002")
    print_table(record, results)
    assert "failed: batch b001 set aside" in capsys.readouterr().out

    # The same id again is refused; the corrected copy (the very same videos) lands under a new id.
    with pytest.raises(BatchSetAside, match="b001 is failed"):
        run_step(params, "validate", "b001")
    with pytest.raises(BatchRejected, match="its id is taken for good: land the corrected batch under a new id"):
        steps.validate(params.typed(), "b001")  # the step itself, as a runner without the check would call it
    monkeypatch.setattr(steps, "distil", real)
    good_batch(params.paths.landing / "b003", seed=1)
    out = run_step(params, "validate", "b003")
    assert out["verdict"] == "accepted" and out["quarantined"] == []  # not duplicates of a retired batch


def test_retire_and_rollback_by_hand_are_recorded_and_the_stream_report_says_what_serves(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = tiny_params(tmp_path)
    for i in range(3):
        good_batch(params.paths.landing / f"b00{i}", seed=i)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(json.dumps(params.model_dump(mode="json")))  # JSON is YAML
    assert [r["decision"] for r in run_stream(params, ["b000", "b001"])] == ["promoted", "promoted"]
    v1, v2 = str(_version(params, "b000").version), str(_version(params, "b001").version)

    # Nothing to go back to from the first champion's predecessor; a version never promoted is refused.
    assert cli.main(["--params", str(params_file), "rollback", "--to", "99", "--reason", "x"]) == 2
    assert "has no version 99" in capsys.readouterr().err
    assert cli.main(["--params", str(params_file), "rollback", "--reason", "b001's model misreads night clips"]) == 0
    assert f"champion: v{v2} (learnt up to b001) -> v{v1} (learnt up to b000)" in capsys.readouterr().out
    client = mlflow.MlflowClient()
    assert str(mlflow_registry.version_by_alias(params.mlflow.model_name, "champion").version) == v1
    old, restored = (client.get_model_version(params.mlflow.model_name, v) for v in (v2, v1))
    assert json.loads(old.tags["vidcil.rolled_back"])["reason"] == "b001's model misreads night clips"
    assert json.loads(restored.tags["vidcil.restored"])["from"] == v2
    assert old.description.startswith(f"rolled back to v{v1}")
    (run,) = mlflow.search_runs(filter_string="tags.`vidcil.step` = 'rollback'", output_format="list")
    assert (run.data.tags["vidcil.from"], run.data.tags["vidcil.to"]) == (v2, v1)
    assert cli.main(["--params", str(params_file), "rollback", "--reason", "again"]) == 2  # v1 was the first
    assert "first champion" in capsys.readouterr().err

    record = stream_report(params, "b001")
    assert record["in_service"]["version"] == v1 and record["in_service"]["rollback"]["from"] == v2
    print_table(record, [])
    assert f"in service now: v{v1} (learnt up to b000), by a rollback from v{v2}" in capsys.readouterr().out

    # b001 retired by hand: the champion (v1) never learnt it; the next batch learns b002 alone.
    assert cli.main(["--params", str(params_file), "retire", "b001", "--reason", "mislabelled by the vendor"]) == 0
    said = capsys.readouterr().out
    assert "b001 retired: mislabelled by the vendor" in said and "new batch id" in said
    assert mlflow_registry.tag(client.get_model_version(params.mlflow.model_name, v2), "retired") == \
        "mislabelled by the vendor"
    (result,) = run_stream(params, ["b002"])
    assert result["decision"] == "promoted"
    trained, ev = read_output(params, "b002", "distil"), read_output(params, "b002", "evaluate")
    assert trained["teacher_version"] == v1 and trained["pending_batches"] == ["b002"]
    assert ev["columns"] == ["b000", "b002"] and len(ev["history"]) == 1 and len(ev["history"][0]) == 1
    memory = read_output(params, "b002", "extract_keyframes")
    assert "b001" not in set(Store(params.paths.store).memory("b002", 1, None).entries["batch_id"])
    assert memory["batches"] == ["b000"]
    record = stream_report(params, "b002")
    assert [b["batch_id"] for b in record["batches"]] == ["b000", "b002"]
    assert record["in_service"] == {"version": str(result["version"]), "batch_id": "b002", "rollback": None}
    v3 = client.get_model_version(params.mlflow.model_name, result["version"])
    assert mlflow_registry.tag(v3, "previous_champion") == v1


def test_a_batch_whose_validation_keeps_crashing_is_recorded_rejected_not_retried_forever(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = tiny_params(tmp_path, orchestration={"max_attempts": 2})
    good_batch(params.paths.landing / "b000", seed=0)

    def validate(params, batch_id):  # the fault: the validator crashes on this batch (a decoder bug, say)
        raise MemoryError("decoder ran out of memory (injected)")

    monkeypatch.setattr(steps, "validate", validate)
    with pytest.raises(MemoryError):
        run_step(params, "validate", "b000")
    assert batch_status(params, "b000") == "pending"
    with pytest.raises(BatchRejected, match="step validate failed 2 times; last: MemoryError: decoder ran out"):
        run_step(params, "validate", "b000")
    assert batch_status(params, "b000") == "rejected"  # Airflow's pick_batch skips it; the stream goes on
    assert Store(params.paths.store).stored() == []
