"""The state of the stream, derived from the data store and the MLflow registry (no ledger).

- accepted batches: ``<store>/batches/<batch_id>/`` (manifest.csv + the accepted videos);
- memory versions: ``<store>/memory/<batch_id>/`` (the memory batch ``batch_id`` trains on);
- the champion: the registered version with alias ``champion``; its ``vidcil.batch_id`` tag says
  up to which batch it has learnt (it trained on every accepted batch up to that one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow

from vidcil.io import mlflow_registry
from vidcil.config import Params
from vidcil.io.store import Store


@dataclass(frozen=True)
class Champion:
    version: str
    batch_id: str  # the last batch it learnt
    class_names: list[str]


def champion(params: Params) -> Champion | None:
    """The champion the pipeline builds on. A promote killed after it moved the alias and before it
    recorded the decision left the alias on an undecided version: until that promote is finished
    (its rerun), the champion in effect is the one it was promoting from."""
    v = mlflow_registry.version_by_alias(params.mlflow.model_name, mlflow_registry.CHAMPION)
    if v is not None and not mlflow_registry.tag(v, "decision") and mlflow_registry.tag(v, "promoting_from"):
        before = mlflow_registry.tag(v, "promoting_from")
        v = None if before == "none" else mlflow_registry.client().get_model_version(params.mlflow.model_name, before)
    if v is None:
        return None
    return Champion(str(v.version), mlflow_registry.tag(v, "batch_id"), json.loads(mlflow_registry.tag(v, "class_names")))


def pending_batches(store: Store, batch_id: str, champ: Champion | None) -> list[str]:
    """Accepted batches the champion has not learnt, up to ``batch_id``: the new training data.

    Normally just ``[batch_id]``; a batch whose model was held stays pending, so its classes are
    learnt by the next model instead of being dropped.
    """
    return [b for b in store.accepted(batch_id) if champ is None or b > champ.batch_id]


def run_dir(params: Params, batch_id: str) -> Path:
    d = params.paths.runs / batch_id
    d.mkdir(parents=True, exist_ok=True)
    return d


def project_id(params: Params) -> str:
    """Which project a run belongs to (its runs folder), so that a project closes only its own orphans
    on an MLflow server other projects share."""
    return str(Path(params.paths.runs).resolve())


class StepNotRun(FileNotFoundError):
    """A step's input is the output of an earlier step that has not run (steps called out of order)."""


def read_output(params: Params, batch_id: str, step: str) -> dict:
    path = params.paths.runs / batch_id / f"{step}.json"
    if not path.is_file():
        raise StepNotRun(f"{path}: step '{step}' has not run for batch {batch_id}; run it first")
    return json.loads(path.read_text())


def write_output(params: Params, batch_id: str, step: str, data: dict) -> dict:
    (run_dir(params, batch_id) / f"{step}.json").write_text(json.dumps(data, indent=1, default=str))
    return data


def batch_run_record(batch_id: str) -> dict | None:
    """The ``stream.json`` logged by the decided MLflow run of ``batch_id``, if any."""
    runs = mlflow.search_runs(
        filter_string=f"tags.`{mlflow_registry.TAG}batch_id` = '{batch_id}' and tags.`{mlflow_registry.TAG}decision` != ''",
        output_format="list", max_results=1, order_by=["start_time DESC"],
    )
    if not runs:
        return None
    return mlflow.artifacts.load_dict(f"{runs[0].info.artifact_uri}/stream.json")


def latest_record(batch_ids: list[str], before: str) -> dict | None:
    """The ``stream.json`` of the latest decided batch among ``batch_ids`` that precede ``before``."""
    for batch_id in sorted((b for b in batch_ids if b < before), reverse=True):
        record = batch_run_record(batch_id)
        if record is not None:
            return record
    return None


def batch_status(params: Params, batch_id: str) -> str:
    """``promoted`` / ``held`` (a decided model version), ``retired`` / ``failed`` (set aside, in the
    store), ``rejected`` (validation), else ``pending``.

    Derived from the data store, the MLflow registry and runs: what a runner asks before it processes a batch.
    """
    gone = Store(params.paths.store).retirement(batch_id)
    if gone is not None:
        return gone["kind"]
    version = mlflow_registry.version_for_batch(params.mlflow.model_name, batch_id)
    if version is not None and mlflow_registry.tag(version, "decision"):
        return mlflow_registry.tag(version, "decision")
    rejected = mlflow.search_runs(filter_string=(
        f"tags.`{mlflow_registry.TAG}batch_id` = '{batch_id}' and tags.`{mlflow_registry.TAG}step` = 'validate' "
        f"and tags.`{mlflow_registry.TAG}verdict` = 'rejected'"), max_results=1)
    return "rejected" if not rejected.empty else "pending"
