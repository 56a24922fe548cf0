"""The in-process runner: every step of :data:`~vidcil.pipeline.spec.PIPELINE` for a batch, in this
process (a laptop, ``vidcil run-stream``, ``dvc repro``); and the stream's report and table.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vidcil.config import Params
from vidcil.io import mlflow_registry, plots
from vidcil.io.contract import BatchRejected, BatchSetAside, ServiceUnavailable, service_problem
from vidcil.io.project_lock import ProjectBusy, project_lock, remove_stale_staging
from vidcil.io.store import Store
from vidcil.pipeline import operations
from vidcil.pipeline.spec import PIPELINE
from vidcil.io.data_versions import VersioningError
from vidcil.pipeline.state import StepNotRun, batch_run_record, project_id

console = Console(stderr=True)


def _say(line: str) -> None:
    print(f"[vidcil] {line}", file=sys.stderr, flush=True)  # plain: Airflow and pod logs too


@contextmanager
def one_writer(params: Params):
    """The project's write lock (:mod:`vidcil.io.project_lock`) around a step or a batch; on taking
    it, what a killed writer left half-staged in the store is removed."""
    # MLflow's artifact client (boto3) bounded like the landing zone's, unless the user set it
    os.environ.setdefault("AWS_MAX_ATTEMPTS", str(params.orchestration.s3_retries + 1))
    os.environ.setdefault("AWS_RETRY_MODE", "standard")
    with project_lock(params.paths.runs, wait_s=params.orchestration.lock_wait_minutes * 60, on_wait=_say) as taken:
        if taken:
            for stale in remove_stale_staging(params.paths.store):
                _say(f"removed {stale}, left half-written by an interrupted run (never published)")
        # configured under the lock: two processes creating one SQLite store at once collide
        mlflow_registry.configure(params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location,
                                  retries=params.mlflow.retries, timeout_s=params.mlflow.timeout_s)
        if taken:
            for run_id in mlflow_registry.close_orphaned_runs(params.mlflow.experiment, project_id(params)):
                _say(f"MLflow run {run_id} was left RUNNING by a stopped process: closed as FAILED")
        yield


def run_step(params: Params, step: str, batch_id: str) -> dict:
    function = PIPELINE.step(step).load()
    params = params.typed()  # the same recipe however the params were made (file, code, a test)
    with one_writer(params):
        return _attempt(params, step, batch_id, function)


def _attempt(params: Params, step: str, batch_id: str, function) -> dict:
    """One attempt of a step, counted: a step failing ``orchestration.max_attempts`` times in a row sets
    its batch aside (:func:`~vidcil.pipeline.operations.step_failed`). A rejected batch, a service down
    or another writer are not the batch's fault and are not counted."""
    operations.check_not_set_aside(params, batch_id)
    try:
        out = function(params, batch_id)
    except (BatchRejected, BatchSetAside, ServiceUnavailable, ProjectBusy, StepNotRun, VersioningError):
        raise  # not the batch's fault: a verdict, a service or remote down, another writer, steps out of order
    except Exception as e:
        if why := service_problem(e):  # S3 down or no credentials: not the batch's fault, one line
            raise ServiceUnavailable(f"{step} of {batch_id}: {why}") from None
        aside = operations.step_failed(params, batch_id, step, e)
        if aside is not None:
            _say(str(aside))
            raise aside from e
        _say(operations.attempt_note(params, batch_id, step))
        raise
    operations.step_succeeded(params, batch_id, step)
    return out


def run_batch(params: Params, batch_id: str) -> dict:
    """Every step for one batch, holding the project's write lock throughout. A batch that is
    registered and decided already is skipped whole."""
    params = params.typed()
    with one_writer(params):
        return _run_batch(params, batch_id)


def _run_batch(params: Params, batch_id: str) -> dict:
    gone = Store(params.paths.store).retirement(batch_id)
    if gone is not None:
        console.print(f"[dim]{batch_id}: {gone['kind']} ({gone['reason']}); skipped[/]")
        return {"batch_id": batch_id, "decision": gone["kind"], "reason": gone["reason"], "skipped": True}
    done = mlflow_registry.version_for_batch(params.mlflow.model_name, batch_id)
    if done is not None and mlflow_registry.tag(done, "decision"):
        console.print(f"[dim]{batch_id}: done already (version {done.version}, "
                      f"{mlflow_registry.tag(done, 'decision')}); nothing to do[/]")
        return {"batch_id": batch_id, "version": done.version, "decision": mlflow_registry.tag(done, "decision"),
                "skipped": True}
    outputs = {}
    for step in PIPELINE.steps:
        start = time.perf_counter()
        outputs[step.name] = _attempt(params, step.name, batch_id, step.load())
        if step.name != "land":
            console.print(f"{batch_id} {step.name:<18} {time.perf_counter() - start:6.1f} s")
    last = PIPELINE.branch.choose(outputs[PIPELINE.branch.after])
    return _attempt(params, last.name, batch_id, last.load())


def run_stream(params: Params, batch_ids: list[str] | None = None) -> list[dict]:
    """Every landed batch, in arrival order. A rejected batch is reported and skipped; so is one set
    aside (retired, or failed too often). Any other failure stops the stream there: its attempt is
    counted, and a rerun tries the batch again (until it is set aside)."""
    batch_ids = batch_ids or sorted(p.name for p in Path(params.paths.landing).iterdir() if p.is_dir())
    results = []
    for batch_id in batch_ids:
        try:
            results.append(run_batch(params, batch_id))
        except BatchRejected as e:
            console.print(f"[red]{batch_id} rejected:[/] {e}")
            results.append({"batch_id": batch_id, "decision": "rejected", "reason": str(e)})
        except BatchSetAside as e:
            console.print(f"[red]{batch_id} set aside:[/] {e}")
            results.append({"batch_id": batch_id, "decision": "failed", "reason": str(e)})
    return results


def stream_report(params: Params, last_batch: str, out_dir: Path | None = None) -> dict | None:
    """The service record after ``last_batch`` (from MLflow); written as JSON/CSV for DVC."""
    mlflow_registry.configure(params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location)
    record = batch_run_record(last_batch)
    if record is None:
        return None
    # What serves now, read from the registry (a rollback since the last decision changes it), and
    # the batches taken out of the stream.
    record["in_service"] = operations.in_service(params)
    store = Store(params.paths.store)
    record["set_aside"] = [store.retirement(b) for b in store.stored() if store.retirement(b)]
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        last = record["batches"][-1]
        metrics = {k: last[k] for k in ("accuracy_all_seen", "forgetting_first", "mean_forgetting",
                                       "backward_transfer", "memory_bytes")}
        metrics["average_incremental_accuracy"] = record["average_incremental_accuracy"]
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        (out_dir / "stream.json").write_text(json.dumps(record, indent=1))
        keys = ["batch_id", "accuracy_all_seen", "forgetting_first", "mean_forgetting", "memory_bytes"]
        lines = [",".join(keys)] + [",".join(str(b[k]) for k in keys) for b in record["batches"]]
        (out_dir / "stream.csv").write_text("\n".join(lines) + "\n")
        (out_dir / "plots").mkdir(exist_ok=True)
        plots.save(plots.accuracy_matrix(record), out_dir / "plots" / "accuracy_matrix.png")
        plots.save(plots.stream_curves(record), out_dir / "plots" / "accuracy_memory_vs_batch.png")
    return record


def print_table(record: dict, results: list[dict]) -> None:
    table = Table(title="vidcil stream: the model in service after each batch")
    for col in ("batch", "acc. all seen", "acc. batch", "forgetting (first)", "mean forgetting",
                "memory bytes", "in service", "challenger", "decision"):
        table.add_column(col, justify="left" if col == "decision" else "right")
    aside = {r["batch_id"]: r for r in record.get("set_aside", [])}
    listed = set()
    for b in record["batches"]:
        if b["batch_id"] in aside:  # decided, then retired since: its row stays, marked
            b = dict(b, reasons=[f"since retired: {aside[b['batch_id']]['reason']}"] + b.get("reasons", []))
        # A held batch: the figures are the champion's (still in service; none before the first
        # promotion), the challenger's accuracy and the gates' reasons beside them.
        decision = ("promoted" + "".join(f"; {r}" for r in b.get("reasons", []) if r.startswith("since retired"))
                    if b["promoted"] else "held: " + ("; ".join(b.get("reasons", [])) or "a gate failed"))
        service = f"v{b['champion_version']}" if b.get("champion_version") else "none"
        challenger = f"v{b['version']} {b['challenger_accuracy']:.3f}" if "challenger_accuracy" in b else f"v{b['version']}"
        listed.add(b["batch_id"])
        table.add_row(b["batch_id"], f"{b['accuracy_all_seen']:.3f}", f"{b['accuracy_new']:.3f}",
                      f"{b['forgetting_first']:+.3f}", f"{b['mean_forgetting']:+.3f}", f"{b['memory_bytes']:,}",
                      service, challenger, decision)
    for r in results:
        if r.get("decision") in ("rejected", "failed", "retired") and r["batch_id"] not in listed:
            table.add_row(r["batch_id"], "-", "-", "-", "-", "-", "-", "-", f"{r['decision']}: {r['reason']}")
    out = Console(width=160)
    out.print(table)
    out.print(f"average incremental accuracy: {record['average_incremental_accuracy']:.3f}")
    now = record.get("in_service")
    if now:
        back = now.get("rollback")
        out.print(f"in service now: v{now['version']} (learnt up to {now['batch_id']})"
                  + (f", by a rollback from v{back['from']} at {back['at']}: {back['reason']}" if back else ""))
