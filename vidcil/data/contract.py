"""The incoming-batch contract: ``<landing>/<batch_id>/labels.csv`` + the video files it lists.

``build_manifest`` probes every listed video once and splits the rows into accepted rows (with
frames, fps, size, duration, codec and sha256) and quarantined rows (with a one-line reason that
names the row, the file and the fix). Basic checks only; the Great Expectations suite is its own
step.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vidcil.data.video import VideoDecodeError, probe_video

REQUIRED_COLUMNS = ("video", "label", "split")
SPLITS = ("train", "test")
MANIFEST_COLUMNS = [
    "video", "label", "split", "sha256", "frames", "fps", "width", "height", "duration_s", "codec",
]


class BatchRejected(ValueError):
    """The batch as a whole breaks the contract; nothing downstream may run."""


@dataclass(frozen=True)
class Manifest:
    accepted: pd.DataFrame  # MANIFEST_COLUMNS (+ any extra labels.csv columns)
    quarantined: pd.DataFrame  # row, video, reason


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_labels(batch_dir: Path) -> pd.DataFrame:
    """Read ``labels.csv`` as strings; raise :class:`BatchRejected` when it breaks the contract."""
    path = Path(batch_dir) / "labels.csv"
    if not path.is_file():
        raise BatchRejected(f"{path}: missing; a batch is complete only when labels.csv exists")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BatchRejected(f"{path}: cannot be read as UTF-8 CSV ({e})") from e
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise BatchRejected(
            f"{path}: missing column(s) {', '.join(missing)}; the header must contain "
            f"{','.join(REQUIRED_COLUMNS)}"
        )
    if df.empty:
        raise BatchRejected(f"{path}: no rows; list at least one video")
    return df


def _row_problem(batch_dir: Path, row_no: int, row: pd.Series) -> str | None:
    where = f"labels.csv row {row_no}"
    video, label, split = row["video"].strip(), row["label"].strip(), row["split"].strip()
    if not label:
        return f"{where}: empty label for video {video!r}; give every row a class name"
    if split not in SPLITS:
        return f"{where}: split {split!r} for video {video!r}; use one of {', '.join(SPLITS)}"
    if not video:
        return f"{where}: empty video path; give the path relative to the batch folder"
    path = (batch_dir / video).resolve()
    if Path(video).is_absolute() or not path.is_relative_to(batch_dir.resolve()):
        return f"{where}: video {video!r} is outside the batch folder; use a relative path inside it"
    if not path.is_file():
        return f"{where}: video {video!r} does not exist; add the file or remove the row"
    return None


def build_manifest(batch_dir: Path, *, min_frames: int = 1) -> Manifest:
    """Probe every row of ``labels.csv`` in ``batch_dir``; see the module docstring."""
    batch_dir = Path(batch_dir)
    labels = read_labels(batch_dir)
    accepted, quarantined = [], []
    for i, row in labels.iterrows():
        row_no = int(i) + 2  # 1-based, after the header line: what an editor shows
        problem = _row_problem(batch_dir, row_no, row)
        probe = None
        if problem is None:
            try:
                probe = probe_video(batch_dir / row["video"].strip())
            except VideoDecodeError as e:
                problem = f"labels.csv row {row_no}: {e}; re-encode the file or remove the row"
        if problem is None and probe.frames < min_frames:
            problem = (
                f"labels.csv row {row_no}: video {row['video']!r} has {probe.frames} frame(s), "
                f"at least {min_frames} are needed; provide a longer clip"
            )
        if problem is not None:
            quarantined.append({"row": row_no, "video": row["video"], "reason": problem})
            continue
        record = {c: row[c] for c in labels.columns}
        record.update(
            video=row["video"].strip(), label=row["label"].strip(), split=row["split"].strip(),
            sha256=sha256_file(batch_dir / row["video"].strip()),
            frames=probe.frames, fps=probe.fps, width=probe.width, height=probe.height,
            duration_s=probe.duration_s, codec=probe.codec,
        )
        accepted.append(record)
    extra = [c for c in labels.columns if c not in MANIFEST_COLUMNS]
    return Manifest(
        pd.DataFrame(accepted, columns=MANIFEST_COLUMNS + extra),
        pd.DataFrame(quarantined, columns=["row", "video", "reason"]),
    )


def content_hash(manifest: pd.DataFrame) -> str:
    """Content hash of a batch: independent of row order and of where the files live."""
    lines = sorted(
        f"{r.video}\t{r.label}\t{r.split}\t{r.sha256}" for r in manifest.itertuples(index=False)
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
