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
import pandas as pd

from vidcil import registry
from vidcil.config import Params
from vidcil.data.clips import ClipRef
from vidcil.memory.store import KeyframeMemory, empty_memory


@dataclass(frozen=True)
class Store:
    root: Path

    @property
    def batches_dir(self) -> Path:
        return self.root / "batches"

    @property
    def memory_dir(self) -> Path:
        return self.root / "memory"

    @property
    def test_index(self) -> Path:
        return self.root / "test_index.csv"

    def batch_dir(self, batch_id: str) -> Path:
        return self.batches_dir / batch_id

    def accepted(self, up_to: str | None = None) -> list[str]:
        """Accepted batch ids in arrival order, up to and including ``up_to``."""
        if not self.batches_dir.is_dir():
            return []
        ids = sorted(p.name for p in self.batches_dir.iterdir()
                     if p.is_dir() and not p.name.startswith(".") and (p / "manifest.csv").is_file())
        return [b for b in ids if up_to is None or b <= up_to]

    def manifest(self, batch_id: str) -> pd.DataFrame:
        return pd.read_csv(self.batch_dir(batch_id) / "manifest.csv", dtype={"label": str, "video": str, "sha256": str})

    def rows(self, batch_ids: list[str], split: str) -> pd.DataFrame:
        frames = [self.manifest(b).assign(batch_id=b) for b in batch_ids]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["batch_id", "video", "label", "split"])
        return df[df["split"] == split].reset_index(drop=True)

    def refs(self, rows: pd.DataFrame, class_names: list[str]) -> list[ClipRef]:
        index = {c: i for i, c in enumerate(class_names)}
        return [ClipRef(self.batch_dir(r.batch_id) / r.video, index[r.label], r.batch_id, r.video,
                        getattr(r, "sha256", None)) for r in rows.itertuples()]

    def memory(self, batch_id: str | None, budget_bytes: int, threshold: float) -> KeyframeMemory:
        """The memory version that batch ``batch_id`` trained on (empty if none)."""
        folder = self.memory_dir / batch_id if batch_id else None
        if folder is not None and (folder / "index.json").is_file():
            return KeyframeMemory.load(folder)
        return empty_memory(self.memory_dir / (batch_id or "none"), budget_bytes, threshold)

    def memory_refs(self, memory: KeyframeMemory, class_names: list[str]) -> list[ClipRef]:
        index = {c: i for i, c in enumerate(class_names)}
        return [ClipRef(memory.shard_path(e), index[e.label], e.batch_id, e.video)
                for _, e in memory.entries.iterrows()]


@dataclass(frozen=True)
class Champion:
    version: str
    batch_id: str  # the last batch it learnt
    class_names: list[str]


def champion(params: Params) -> Champion | None:
    v = registry.version_by_alias(params.mlflow.model_name, registry.CHAMPION)
    if v is None:
        return None
    return Champion(str(v.version), registry.tag(v, "batch_id"), json.loads(registry.tag(v, "class_names")))


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


def read_output(params: Params, batch_id: str, step: str) -> dict:
    path = params.paths.runs / batch_id / f"{step}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: step '{step}' has not run for batch {batch_id}; run it first")
    return json.loads(path.read_text())


def write_output(params: Params, batch_id: str, step: str, data: dict) -> dict:
    (run_dir(params, batch_id) / f"{step}.json").write_text(json.dumps(data, indent=1, default=str))
    return data


def batch_run_record(batch_id: str) -> dict | None:
    """The ``stream.json`` logged by the decided MLflow run of ``batch_id``, if any."""
    runs = mlflow.search_runs(
        filter_string=f"tags.`{registry.TAG}batch_id` = '{batch_id}' and tags.`{registry.TAG}decision` != ''",
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
    """``promoted`` / ``held`` (a decided model version), ``rejected`` (validation), else ``pending``.

    Derived from the MLflow registry and runs: what a runner asks before it processes a batch.
    """
    version = registry.version_for_batch(params.mlflow.model_name, batch_id)
    if version is not None and registry.tag(version, "decision"):
        return registry.tag(version, "decision")
    rejected = mlflow.search_runs(filter_string=(
        f"tags.`{registry.TAG}batch_id` = '{batch_id}' and tags.`{registry.TAG}step` = 'validate' "
        f"and tags.`{registry.TAG}verdict` = 'rejected'"), max_results=1)
    return "rejected" if not rejected.empty else "pending"
