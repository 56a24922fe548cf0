"""The decoded-frame cache: every video decoded once, at the working resolution, on local disk.

An entry is one raw uint8 ``.npy`` array ``[F, h, w, 3]`` (memory-mapped when read, so a worker
touches only the frames it samples) and a small JSON sidecar (shape and sha256 of the array),
keyed by the video's sha256 and the working resolution::

    <root>/<sha256[:2]>/<sha256>-s<short_side>-f<max_frames>.npy   (+ .json)

Raw frames were chosen by measurement (``benchmarks/input_pipeline.py``): reading T frames of a
memory-mapped array costs microseconds, where JPEG frames cost a decode per frame per epoch.

The cache is derived data: not DVC-tracked, safe to delete, bounded by ``max_bytes`` (the least
recently used entries go first; a read marks an entry used). An entry whose bytes do not match
its sidecar is rebuilt from the video, never trusted. Writers stage under a unique name and
rename, so concurrent processes never see half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np

from vidcil.io.contract import sha256_file
from vidcil.io.video import WorkingFrames, decode_working


class FrameCache:
    """Frames of any video at the working resolution: ``cache.frames(path, sha256) -> [F, h, w, 3]``."""

    def __init__(self, root: str | Path, short_side: int, max_frames: int, max_bytes: int):
        self.root = Path(root)
        self.short_side, self.max_frames, self.max_bytes = short_side, max_frames, max_bytes
        self.decodes = 0  # videos decoded by this process (a second epoch should add none)
        self._verified: set[Path] = set()  # entries checked against their sidecar in this process

    def __getstate__(self) -> dict:  # DataLoader workers start with an empty verification memo
        return self.__dict__ | {"_verified": set()}

    def entry(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}-s{self.short_side}-f{self.max_frames}.npy"

    # -- reading ---------------------------------------------------------------------------------

    def frames(self, path: str | Path, sha256: str | None = None) -> np.ndarray:
        """The cached frames of ``path`` (decoded now if not cached or corrupt), read-only memmap."""
        sha256 = sha256 or sha256_file(Path(path))
        entry = self.entry(sha256)
        cached = self._read(entry)
        if cached is not None:
            return cached
        self.put(sha256, decode_working(path, self.short_side, self.max_frames))
        self.decodes += 1
        return self._read(entry, verify=False)

    def _read(self, entry: Path, verify: bool = True) -> np.ndarray | None:
        try:
            frames = np.load(entry, mmap_mode="r")
            if entry not in self._verified and verify:
                meta = json.loads(entry.with_suffix(".json").read_text())
                if list(frames.shape) != meta["shape"] or _digest(frames) != meta["sha256"]:
                    raise ValueError("contents do not match the sidecar")
            self._verified.add(entry)
        except (OSError, ValueError, KeyError, EOFError):  # missing, truncated or corrupt: rebuild
            self._verified.discard(entry)
            return None
        try:
            os.utime(entry)  # least recently used goes first
        except OSError:
            pass
        return frames

    # -- writing ---------------------------------------------------------------------------------

    def collector(self) -> WorkingFrames:
        """A frame sink for a decode that is happening anyway (validation's probe); then :meth:`put`."""
        return WorkingFrames(self.short_side, self.max_frames)

    def put(self, sha256: str, frames: np.ndarray) -> Path:
        """Store ``frames`` (uint8 ``[F, h, w, 3]``) for ``sha256``; evicts old entries past the limit."""
        entry = self.entry(sha256)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tag = f".{uuid.uuid4().hex}.partial"
        tmp_npy, tmp_json = entry.with_name(entry.name + tag), entry.with_name(entry.stem + ".json" + tag)
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        with open(tmp_npy, "wb") as f:
            np.save(f, frames)
        tmp_json.write_text(json.dumps({"shape": list(frames.shape), "sha256": _digest(frames)}))
        os.replace(tmp_json, entry.with_suffix(".json"))
        os.replace(tmp_npy, entry)
        self._verified.add(entry)
        self.evict(keep=entry)
        return entry

    # -- size --------------------------------------------------------------------------------------

    def entries(self) -> list[Path]:
        return sorted(self.root.glob("*/*.npy")) if self.root.is_dir() else []

    def size_bytes(self) -> int:
        return sum(_size(p) + _size(p.with_suffix(".json")) for p in self.entries())

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Delete least recently used entries until the cache is within ``max_bytes``."""
        sized = []
        for p in self.entries():
            try:
                st = p.stat()
            except OSError:
                continue
            sized.append((st.st_mtime, p, st.st_size + _size(p.with_suffix(".json"))))
        total, removed = sum(s for _, _, s in sized), []
        for _, p, size in sorted(sized, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            for f in (p, p.with_suffix(".json")):
                f.unlink(missing_ok=True)
            self._verified.discard(p)
            total -= size
            removed.append(p)
        return removed


def _digest(frames: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(frames)).cast("B")).hexdigest()


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0
