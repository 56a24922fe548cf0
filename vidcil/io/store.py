"""The data store: accepted batches, memory versions and the cumulative test index (DVC-tracked).

- accepted batches: ``<store>/batches/<batch_id>/`` (manifest.csv + the accepted videos);
- memory versions: ``<store>/memory/<batch_id>/`` (the memory batch ``batch_id`` trains on);
- ``<store>/test_index.csv``: every accepted test video so far.

A batch is retired (``vidcil retire``, or set aside after failing a step too often) by a
``retired.json`` beside its manifest, saying why: it stays in the store and in DVC's history, but
leaves the training set, the test index and the duplicate check (:meth:`Store.accepted` skips it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from vidcil.io.memory_store import KeyframeMemory, empty_memory

if TYPE_CHECKING:  # torch's: imported where clips are made, so steps that read no clip start without it
    from vidcil.io.clips import ClipRef


RETIRED = "retired.json"


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
                     if p.is_dir() and not p.name.startswith(".") and (p / "manifest.csv").is_file()
                     and not (p / RETIRED).is_file())
        return [b for b in ids if up_to is None or b <= up_to]

    def stored(self) -> list[str]:
        """Every batch ever accepted into the store, retired ones too (arrival order)."""
        if not self.batches_dir.is_dir():
            return []
        return sorted(p.name for p in self.batches_dir.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / "manifest.csv").is_file())

    def retirement(self, batch_id: str) -> dict | None:
        """Why ``batch_id`` was retired (``reason``, ``kind``: retired | failed, ``at``), or None."""
        path = self.batch_dir(batch_id) / RETIRED
        return json.loads(path.read_text()) if path.is_file() else None

    def retire(self, batch_id: str, record: dict) -> Path:
        """Mark a stored batch retired (written whole, then renamed into place)."""
        path = self.batch_dir(batch_id) / RETIRED
        tmp = path.with_name(f".{RETIRED}.partial")
        tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False))
        os.replace(tmp, path)
        return path

    def manifest(self, batch_id: str) -> pd.DataFrame:
        return pd.read_csv(self.batch_dir(batch_id) / "manifest.csv", dtype={"label": str, "video": str, "sha256": str})

    def rows(self, batch_ids: list[str], split: str) -> pd.DataFrame:
        frames = [self.manifest(b).assign(batch_id=b) for b in batch_ids]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["batch_id", "video", "label", "split"])
        return df[df["split"] == split].reset_index(drop=True)

    def refs(self, rows: pd.DataFrame, class_names: list[str]) -> list[ClipRef]:
        from vidcil.io.clips import ClipRef

        index = {c: i for i, c in enumerate(class_names)}
        return [ClipRef(self.batch_dir(r.batch_id) / r.video, index[r.label], r.batch_id, r.video,
                        getattr(r, "sha256", None)) for r in rows.itertuples()]

    def memory(self, batch_id: str | None, budget_bytes: int, threshold: float) -> KeyframeMemory:
        """The memory version that batch ``batch_id`` trained on (empty if none)."""
        folder = self.memory_dir / batch_id if batch_id else None
        if folder is not None and (folder / "index.json").is_file():
            return KeyframeMemory.load(folder)
        return empty_memory(self.memory_dir / (batch_id or "none"), budget_bytes, threshold)

    def without_retired(self, memory: KeyframeMemory) -> KeyframeMemory:
        """``memory`` without the exemplars of batches retired since it was written."""
        gone = set(self.stored()) - set(self.accepted())
        if not gone or memory.entries.empty:
            return memory
        return replace(memory, entries=memory.entries[~memory.entries["batch_id"].isin(gone)].reset_index(drop=True))

    def memory_refs(self, memory: KeyframeMemory, class_names: list[str]) -> list[ClipRef]:
        return self.without_retired(memory).refs({c: i for i, c in enumerate(class_names)})
