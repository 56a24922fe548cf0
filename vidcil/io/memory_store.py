"""The exemplar memory on disk: one keyframe shard (an H.264 mp4) per exemplar video + an index.

A memory version is an immutable folder::

    <memory_root>/<batch_id>/index.json      budget, threshold, the batches it covers, one entry
                                              per exemplar (class, source, confidence, keyframes)
    <memory_root>/<batch_id>/shards/*.mp4    the keyframes of one exemplar video each

``<batch_id>`` is the batch whose model trains on it. Shards hold frames at the working resolution
(``data.short_side``), as the decoded-frame cache gives them. A new version is written to a temporary
folder and renamed into place, so a failed run never leaves half a memory and never touches an
earlier version. Memory bytes are what is on disk: every shard plus the index.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from vidcil.io.video import write_video
from vidcil.core.memory.ranking import class_share, fit_to_share
from vidcil.core.memory.frames import FRAME_POLICIES
from vidcil.core.memory.frames.keyframes import FixedThreshold

# priority orders exemplars within a class (kept first, dropped last); it is the confidence unless
# another selection strategy (random, herding) ranked them.
ENTRY_COLUMNS = ["label", "batch_id", "video", "confidence", "priority", "keyframes", "shard", "bytes"]


@dataclass(frozen=True)
class KeyframeMemory:
    root: Path
    budget_bytes: int
    threshold: float
    batches: tuple[str, ...]  # batches whose exemplars have been folded in
    entries: pd.DataFrame  # ENTRY_COLUMNS

    @classmethod
    def load(cls, root: Path) -> "KeyframeMemory":
        root = Path(root)
        index = json.loads((root / "index.json").read_text())
        entries = pd.DataFrame(index["entries"], columns=ENTRY_COLUMNS)
        entries["priority"] = entries["priority"].fillna(entries["confidence"])  # indexes before priority
        return cls(root, index["budget_bytes"], index["threshold"], tuple(index["batches"]), entries)

    @property
    def bytes_on_disk(self) -> int:
        files = [self.root / "index.json", *(self.root / s for s in self.entries["shard"])]
        return sum(f.stat().st_size for f in files)

    @property
    def content_hash(self) -> str:
        """sha256 of the index (which names every shard by its own content hash)."""
        return hashlib.sha256((self.root / "index.json").read_bytes()).hexdigest()

    def shard_path(self, entry: pd.Series) -> Path:
        return self.root / entry["shard"]


def empty_memory(root: Path, budget_bytes: int, threshold: float) -> KeyframeMemory:
    """The memory before any batch: no exemplar (not written to disk)."""
    return KeyframeMemory(Path(root), budget_bytes, threshold, (), pd.DataFrame(columns=ENTRY_COLUMNS))


def shard_size(frames: np.ndarray) -> int:
    """Bytes of ``frames`` (uint8 ``[F, h, w, 3]``) encoded as the memory stores a shard."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_video(Path(tmp) / "probe.mp4", frames)


def frame_policy(options):
    """The frame policy of ``memory.frames`` (a config or a dict with ``kind``), measuring with shards."""
    return FRAME_POLICIES.build(options, encoded_size=shard_size)


def _write_shard(frames, staging: Path, batch_id: str, video: str) -> tuple[str, int]:
    tmp = staging / "shards" / ".incoming.mp4"
    size = write_video(tmp, frames)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:16]
    stem = f"{batch_id}__{Path(video).with_suffix('').as_posix().replace('/', '__')}"
    name = f"shards/{stem}__{digest}.mp4"
    os.replace(tmp, staging / name)
    return name, size


def build_memory(
    previous: KeyframeMemory,
    ranked: pd.DataFrame,
    frames_of: Callable[[str, str], np.ndarray],
    out_dir: Path,
    *,
    budget_bytes: int,
    threshold: float,
    batches: tuple[str, ...],
    frame_policy=None,
) -> KeyframeMemory:
    """Write the next memory version to ``out_dir`` and return it.

    ``previous``: the memory the teacher trained on. ``ranked``: new exemplar candidates (columns
    ``label``, ``batch_id``, ``video``, ``confidence``; most confident first per class), whose
    frames at the working resolution are ``frames_of(batch_id, video)`` (uint8 ``[F, h, w, 3]``, from
    the decoded-frame cache; keyframe indices count these frames); an optional ``priority`` column orders them instead of the
    confidence. ``batches``: every batch the new memory covers. All classes, old and new, get an
    equal share of ``budget_bytes``; within a share the highest priority stays.
    ``frame_policy(frames, allowance_bytes) -> indices`` picks each video's frames (default:
    keyframes at ``threshold``); the allowance is the class's unused share over its remaining candidates.
    """
    frame_policy = frame_policy or FixedThreshold(threshold)
    if "priority" not in ranked:
        ranked = ranked.assign(priority=ranked["confidence"])
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: memory version exists already; versions are immutable")
    classes = sorted(set(previous.entries["label"]) | set(ranked["label"]))
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "shards").mkdir(parents=True)
    if not classes:  # nothing learnt yet (the first batch): an empty memory version
        (staging / "index.json").write_text(json.dumps(
            {"budget_bytes": budget_bytes, "threshold": threshold, "batches": list(batches), "entries": []}))
        os.replace(staging, out_dir)
        return KeyframeMemory.load(out_dir)
    share = class_share(budget_bytes, len(classes))

    kept_old = fit_to_share(previous.entries, share)
    for entry in kept_old.itertuples():
        # Shards are immutable and content-addressed: hard-link instead of copying when possible.
        src, dst = previous.root / entry.shard, staging / entry.shard
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    new_entries = []
    for label, group in ranked.groupby("label", sort=True):
        group = group.sort_values("priority", ascending=False, kind="stable")
        used = 0
        for i, row in enumerate(group.itertuples()):
            frames = np.asarray(frames_of(row.batch_id, row.video))
            keys = frame_policy(frames, (share - used) // (len(group) - i))
            last = not keys  # an equal split is too little for this video: it gets all that is left
            keys = keys or frame_policy(frames, share - used)
            if not keys:
                break
            name, size = _write_shard(frames[keys], staging, row.batch_id, row.video)
            if used + size > share:
                (staging / name).unlink()
                break  # the next one has a lower priority: stop, as fit_to_share does
            used += size
            new_entries.append(
                {"label": label, "batch_id": row.batch_id, "video": row.video,
                 "confidence": float(row.confidence), "priority": float(row.priority),
                 "keyframes": [int(k) for k in keys], "shard": name, "bytes": size}
            )
            if last:
                break
    entries = pd.concat([kept_old, pd.DataFrame(new_entries, columns=ENTRY_COLUMNS)], ignore_index=True)
    missing = sorted(set(classes) - set(entries["label"]))
    if missing:
        shutil.rmtree(staging)
        raise ValueError(
            f"memory budget {budget_bytes} B leaves {share} B per class, too little for one "
            f"exemplar of {', '.join(missing)}; raise memory.budget_bytes or memory.keyframe_threshold"
        )
    entries = entries.sort_values(["label", "priority"], ascending=[True, False]).reset_index(drop=True)
    # The index counts too: while shards + index exceed the budget, the lowest-priority exemplar
    # of the class using the most bytes goes (never a class's last one).
    while True:
        index = {
            "budget_bytes": budget_bytes, "threshold": threshold, "batches": list(batches),
            "entries": entries.to_dict(orient="records"),
        }
        text = json.dumps(index, indent=1)
        if int(entries["bytes"].sum()) + len(text.encode()) <= budget_bytes:
            break
        per_class = entries.groupby("label")["bytes"].agg(["sum", "count"])
        per_class = per_class[per_class["count"] > 1]
        if per_class.empty:
            shutil.rmtree(staging)
            raise ValueError(f"memory budget {budget_bytes} B cannot hold one exemplar per class; "
                             "raise memory.budget_bytes")
        heaviest = per_class["sum"].idxmax()
        drop = entries[entries["label"] == heaviest].index[-1]
        (staging / entries.loc[drop, "shard"]).unlink()
        entries = entries.drop(index=drop).reset_index(drop=True)
    (staging / "index.json").write_text(text)
    os.replace(staging, out_dir)
    return KeyframeMemory.load(out_dir)
