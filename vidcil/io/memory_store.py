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
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from vidcil.io.video import decode_video, write_video
from vidcil.core.memory.ranking import class_share, fit_to_share
from vidcil.core.memory.frames import DEFAULT_CRF, FRAME_POLICIES, ShardPlan, as_plan, shrink
from vidcil.core.memory.frames.keyframes import FixedThreshold

log = logging.getLogger(__name__)

# Bytes of index.json set aside before classes share an adapting policy's budget: the header, and one
# entry per class (an entry is ~300 B: its label, source, keyframes and shard name).
INDEX_RESERVE = (300, 400)

# priority orders exemplars within a class (kept first, dropped last); it is the confidence unless
# another selection strategy (random, herding) ranked them.
ENTRY_COLUMNS = ["label", "batch_id", "video", "confidence", "priority", "keyframes", "shard", "bytes",
                 "side", "crf", "logits", "span"]  # side: the shard's short side in pixels, crf: its x264 quality;
# logits: the teacher's logits on the video when it went in (train.logit_replay, DER++), else None;
# span: the source video's working frames, which the keyframes index (a shard is replayed at that length,
# each keyframe held until the next one); None in indexes written before 2026-12-07 (frames repeated evenly)

LOGIT_DECIMALS = 3  # stored logits are rounded: they cost index bytes, and 1e-3 is far below their spread


@dataclass(frozen=True)
class KeyframeMemory:
    root: Path
    budget_bytes: int
    threshold: float
    batches: tuple[str, ...]  # batches whose exemplars have been folded in
    entries: pd.DataFrame  # ENTRY_COLUMNS
    unrepresented: dict = field(default_factory=dict)  # class -> why it has no exemplar (fit, tiny budgets)

    @classmethod
    def load(cls, root: Path) -> "KeyframeMemory":
        root = Path(root)
        index = json.loads((root / "index.json").read_text())
        entries = pd.DataFrame(index["entries"], columns=ENTRY_COLUMNS)
        entries["priority"] = entries["priority"].fillna(entries["confidence"])  # indexes before priority
        entries["crf"] = entries["crf"].fillna(DEFAULT_CRF)  # indexes before the fit policy
        entries["logits"] = entries["logits"].map(stored_logits)  # indexes before logit replay: None
        entries["span"] = entries["span"].map(_span)  # indexes before spans: None
        return cls(root, index["budget_bytes"], index["threshold"], tuple(index["batches"]), entries,
                   dict(index.get("unrepresented", {})))

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

    def refs(self, class_index: dict[str, int]) -> list:
        """The exemplars as labelled clips (``ClipRef``: the shard, the class's logit index, the stored
        logits if any) for training; ``class_index``: class name -> logit index."""
        from vidcil.io.clips import ClipRef  # torch's: steps that only write memories start without it

        return [ClipRef(self.root / e.shard, class_index[e.label], e.batch_id, e.video, logits=e.logits,
                        keyframes=tuple(int(k) for k in e.keyframes), span=_span(e.span))
                for e in self.entries.itertuples()]


def _span(value) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def stored_logits(value) -> tuple[float, ...] | None:
    """A candidate's or entry's logits (a list, an array or its JSON text) as stored: rounded, or None."""
    if isinstance(value, str):
        value = json.loads(value)
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return None
    return tuple(round(float(v), LOGIT_DECIMALS) for v in value)


def empty_memory(root: Path, budget_bytes: int, threshold: float) -> KeyframeMemory:
    """The memory before any batch: no exemplar (not written to disk)."""
    return KeyframeMemory(Path(root), budget_bytes, threshold, (), pd.DataFrame(columns=ENTRY_COLUMNS))


def shard_size(frames: np.ndarray, crf: int = DEFAULT_CRF) -> int:
    """Bytes of ``frames`` (uint8 ``[F, h, w, 3]``) encoded as the memory stores a shard."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_video(Path(tmp) / "probe.mp4", frames, crf=crf, lean=True)


def frame_policy(options, clip_frames: int = 8):
    """The frame policy of ``memory.frames`` (a config or a dict with ``kind``), measuring with shards;
    ``clip_frames``: the frames the model samples per clip (``model.num_segments``), ``fit``'s default."""
    return FRAME_POLICIES.build(options, encoded_size=shard_size, clip_frames=clip_frames)


def _write_shard(frames, staging: Path, batch_id: str, video: str, crf: int = DEFAULT_CRF) -> tuple[str, int]:
    tmp = staging / "shards" / ".incoming.mp4"
    size = write_video(tmp, frames, crf=crf, lean=True)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:16]
    stem = f"{batch_id}__{Path(video).with_suffix('').as_posix().replace('/', '__')}"
    name = f"shards/{stem}__{digest}.mp4"
    os.replace(tmp, staging / name)
    return name, size


def per_class_summary(entries: pd.DataFrame) -> dict[str, dict]:
    """What the memory chose per class: videos, frames, bytes, the shards' short sides and qualities."""
    out = {}
    for label, g in entries.groupby("label", sort=True):
        out[str(label)] = {
            "videos": int(len(g)), "frames": int(sum(len(k) for k in g["keyframes"])),
            "bytes": int(g["bytes"].sum()),
            "sides": sorted({int(x) for x in g["side"].dropna()}),
            "crf": sorted({int(x) for x in g["crf"].dropna()}),
        }
    return out


def describe_choice(memory: "KeyframeMemory") -> list[str]:
    """One line per class: what the memory kept of it (and the classes it could not keep)."""
    lines = []
    for label, c in per_class_summary(memory.entries).items():
        sides = "/".join(str(x) for x in c["sides"]) or "?"
        lines.append(f"{label}: {c['videos']} video(s), {c['frames']} frame(s), {c['bytes']} B "
                     f"at {sides} px, crf {'/'.join(str(x) for x in c['crf'])}")
    lines += [f"{label}: no exemplar ({why})" for label, why in memory.unrepresented.items()]
    return lines


def _entry(label, row, plan: ShardPlan, keys: list[int], frames: np.ndarray, staging: Path,
           span: int | None) -> dict:
    """Write ``plan``'s shard of ``frames`` (the video's frames the plan's keys index) and describe it;
    ``keys``: the kept frames as indices of the video's working frames, ``span`` how many there are."""
    stored = shrink(np.asarray(frames)[plan.keys], plan.side)
    name, size = _write_shard(stored, staging, row.batch_id, row.video, plan.crf)
    return {"label": label, "batch_id": row.batch_id, "video": row.video,
            "confidence": float(row.confidence), "priority": float(row.priority),
            "keyframes": [int(k) for k in keys], "shard": name, "bytes": size,
            "side": int(min(stored.shape[1:3])), "crf": int(plan.crf),
            "logits": stored_logits(getattr(row, "logits", None)), "span": span}


def _refit(entry, root: Path, allowance: int, frame_policy, staging: Path) -> dict | None:
    """A stored exemplar re-encoded smaller (an adapting policy on its shard's frames), or None."""
    frames = decode_video(root / entry.shard)
    plan = as_plan(frame_policy(frames, allowance))
    if not plan:
        return None
    return _entry(entry.label, entry, plan, [list(entry.keyframes)[k] for k in plan.keys], frames, staging,
                  _span(getattr(entry, "span", None)))


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
    the decoded-frame cache; keyframe indices count these frames); an optional ``priority`` column
    orders them instead of the confidence, an optional ``logits`` column (the teacher's, for logit
replay) is stored with each exemplar. ``batches``: every batch the new memory covers. All
    classes, old and new, get an equal share of ``budget_bytes``; within a share the highest
    priority stays.

    ``frame_policy(frames, allowance_bytes) -> indices | ShardPlan`` picks each video's frames
    (default: keyframes at ``threshold``). A policy with ``wish(frames)`` (``fit``) decides how many
    videos a class keeps: as many as its share holds at the first video's wished size, the share
    split equally over them. Otherwise the allowance is the class's unused share over its remaining
    candidates. An adapting policy (``adapts``) never fails the memory: an old class whose exemplars
    no longer fit its smaller share keeps its best one re-encoded smaller, and a class whose share is
    below the smallest possible shard is left without exemplar, said in the log and in the index's
    ``unrepresented``. Other policies raise ``ValueError`` then.
    """
    frame_policy = frame_policy or FixedThreshold(threshold)
    adapts, wish = bool(getattr(frame_policy, "adapts", False)), getattr(frame_policy, "wish", None)
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
    if adapts:  # the index counts too: room for its header and every class's first entry comes first
        share = class_share(max(0, budget_bytes - INDEX_RESERVE[0] - INDEX_RESERVE[1] * len(classes)), len(classes))

    kept_old = fit_to_share(previous.entries, share)
    for entry in kept_old.itertuples():
        # Shards are immutable and content-addressed: hard-link instead of copying when possible.
        src, dst = previous.root / entry.shard, staging / entry.shard
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    refitted = []
    if adapts:  # an old class whose every exemplar outgrew its share keeps its best one, smaller
        lost = previous.entries[~previous.entries["label"].isin(set(kept_old["label"]))]
        for _, group in lost.groupby("label", sort=True):
            top = group.sort_values("priority", ascending=False, kind="stable").iloc[0]
            entry = _refit(top, previous.root, share, frame_policy, staging)
            if entry is not None:
                refitted.append(entry)

    new_entries = []
    for label, group in ranked.groupby("label", sort=True):
        group = group.sort_values("priority", ascending=False, kind="stable")
        used, slots, taken = 0, len(group), 0
        for i, row in enumerate(group.itertuples()):
            frames = np.asarray(frames_of(row.batch_id, row.video))
            if wish is not None:
                if i == 0:  # how many videos the share holds at the best video's wished size
                    slots = int(min(len(group), max(1, share // max(1, int(wish(frames))))))
                if taken >= slots and share - used < wish(frames):
                    break  # the planned videos are in; another one would only fit made smaller
                allowance = (share - used) // max(1, slots - taken)
                plan, last = as_plan(frame_policy(frames, allowance)), False
            else:
                plan = as_plan(frame_policy(frames, (share - used) // (len(group) - i)))
                last = not plan  # an equal split is too little for this video: it gets all that is left
                plan = plan or as_plan(frame_policy(frames, share - used))
            if not plan:
                break
            entry = _entry(label, row, plan, plan.keys, frames, staging, len(frames))
            if used + entry["bytes"] > share:
                (staging / entry["shard"]).unlink()
                break  # the next one has a lower priority: stop, as fit_to_share does
            used, taken = used + entry["bytes"], taken + 1
            new_entries.append(entry)
            if last:
                break
    entries = pd.concat([kept_old, pd.DataFrame(refitted + new_entries, columns=ENTRY_COLUMNS)],
                        ignore_index=True)
    missing = sorted(set(classes) - set(entries["label"]))
    if missing and not adapts:
        shutil.rmtree(staging)
        raise ValueError(
            f"memory budget {budget_bytes} B leaves {share} B per class, too little for one "
            f"exemplar of {', '.join(missing)}; raise memory.budget_bytes or memory.keyframe_threshold"
        )
    entries = entries.sort_values(["label", "priority"], ascending=[True, False]).reset_index(drop=True)
    # The index counts too: while shards + index exceed the budget, the lowest-priority exemplar
    # of the class using the most bytes goes (never a class's last one; an adapting policy shrinks it).
    while True:
        index = {
            "budget_bytes": budget_bytes, "threshold": threshold, "batches": list(batches),
            "entries": [e | {"logits": stored_logits(e["logits"]), "span": _span(e["span"])}
                        for e in entries.to_dict(orient="records")],
        }
        if missing:  # per_class_summary(entries) says what each class kept; these kept nothing
            index["unrepresented"] = {c: f"its share of {share} B is below the smallest shard" for c in missing}
        text = json.dumps(index, separators=(",", ":"))  # compact: the index's bytes count in the budget
        excess = int(entries["bytes"].sum()) + len(text.encode()) - budget_bytes
        if excess <= 0 or (adapts and entries.empty):  # (a budget below an empty index: kept, said below)
            break
        per_class = entries.groupby("label")["bytes"].agg(["sum", "count"])
        several = per_class[per_class["count"] > 1]
        if several.empty and not (adapts and len(entries)):
            shutil.rmtree(staging)
            raise ValueError(f"memory budget {budget_bytes} B cannot hold one exemplar per class; "
                             "raise memory.budget_bytes")
        heaviest = (several if len(several) else per_class)["sum"].idxmax()
        drop = entries[entries["label"] == heaviest].index[-1]
        old = entries.loc[drop]
        replacement = None
        if several.empty:  # every class is down to one exemplar: the biggest one is made smaller
            replacement = _refit(old, staging, int(old["bytes"]) - excess, frame_policy, staging)
            if replacement is None:
                missing = sorted({*missing, str(heaviest)})
        if (staging / old["shard"]).exists() and (replacement is None or replacement["shard"] != old["shard"]):
            (staging / old["shard"]).unlink()
        entries = entries.drop(index=drop)
        if replacement is not None:
            entries = pd.concat([entries, pd.DataFrame([replacement], columns=ENTRY_COLUMNS)])
        entries = entries.sort_values(["label", "priority"], ascending=[True, False]).reset_index(drop=True)
    if missing:
        log.warning("memory budget %d B: no exemplar of %s (each class's share, %d B, is below the smallest "
                    "shard); raise memory.budget_bytes to keep them", budget_bytes, ", ".join(missing), share)
    (staging / "index.json").write_text(text)
    os.replace(staging, out_dir)
    return KeyframeMemory.load(out_dir)
