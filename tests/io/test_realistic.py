"""The realistic stream: every container and orientation, files that decode to what was planned,
byte-identical reruns, a complete labels.csv, and clips streamed to disk (memory of a few frames)."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import pytest
import torch

from vidcil.io.realistic import CONTAINERS, RealisticProfile, generate_realistic_stream, plan_stream, write_clip

# 8 clips of 2-2.5 s, one per (container, orientation); up to 480p, to stay quick (1080p: the memory test).
TINY = RealisticProfile(class_batches=1, train_per_class=1, test_per_class=1, max_seconds=2.5,
                        landscape=((426, 240), (640, 360), (854, 480)), portrait=((360, 640), (480, 854)))


@pytest.fixture
def one_thread():
    """As in the generator's workers: torch's per-op threads only cost time on frames this small."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    landing = tmp_path_factory.mktemp("realistic")
    calls = []
    folders = generate_realistic_stream(landing, TINY, progress=lambda done, total: calls.append((done, total)))
    return landing, folders, plan_stream(TINY)["b000"], calls


def test_every_batch_mixes_containers_and_orientations():
    for batch_id, clips in plan_stream(RealisticProfile()).items():
        assert {c.container for c in clips} == set(CONTAINERS), batch_id
        assert {c.width > c.height for c in clips} == {True, False}, batch_id
        assert all(c.width % 2 == 0 and c.height % 2 == 0 for c in clips)
        assert all(2.0 <= c.seconds <= 30.0 for c in clips)


def test_files_decode_to_the_planned_size_rate_and_length(stream):
    landing, folders, clips, calls = stream
    assert folders == [landing / "b000"]
    assert calls[-1] == (len(clips), len(clips))
    assert {c.container for c in clips} == set(CONTAINERS)
    assert {c.width > c.height for c in clips} == {True, False}
    assert len({(c.width, c.height) for c in clips}) > 2 and len({c.fps for c in clips}) > 2
    for clip in clips:
        path = landing / "b000" / clip.video
        assert path.suffix == f".{clip.container}"
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert float(stream.average_rate) == pytest.approx(clip.fps), clip
            frames = 0
            for frame in container.decode(stream):
                assert (frame.width, frame.height) == (clip.width, clip.height), clip
                frames += 1
        assert frames == clip.n_frames == round(clip.fps * clip.seconds), clip


def test_labels_csv_lists_every_file_and_nothing_is_left_half_written(stream):
    landing, _, clips, _ = stream
    batch = landing / "b000"
    with open(batch / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["video"], r["label"], r["split"]) for r in rows] == [(c.video, c.label, c.split) for c in clips]
    files = {p.relative_to(batch).as_posix() for p in batch.rglob("*") if p.is_file()} - {"labels.csv"}
    assert files == {r["video"] for r in rows}
    assert {r["split"] for r in rows} == {"train", "test"}


def test_same_seed_gives_the_same_bytes_in_every_container(stream, tmp_path, one_thread):
    landing, _, clips, _ = stream
    for container in CONTAINERS:  # the cheapest clip of each container, written again in this process
        clip = min((c for c in clips if c.container == container), key=lambda c: c.n_frames * c.width * c.height)
        again = tmp_path / f"again.{container}"
        write_clip(again, clip)
        assert again.read_bytes() == (landing / "b000" / clip.video).read_bytes(), clip


def test_a_complete_batch_is_skipped_and_an_interrupted_one_resumes(stream):
    landing, _, clips, _ = stream
    batch = landing / "b000"
    before = {c.video: (batch / c.video).stat().st_mtime_ns for c in clips}
    calls = []
    generate_realistic_stream(landing, TINY, progress=lambda done, total: calls.append(done))
    assert calls == [] and before == {c.video: (batch / c.video).stat().st_mtime_ns for c in clips}

    # Interrupted: labels.csv not yet written, one clip missing, a half-written file left behind.
    cheapest = min(clips, key=lambda c: c.n_frames * c.width * c.height)
    labels = (batch / "labels.csv").read_bytes()
    original = (batch / cheapest.video).read_bytes()
    (batch / "labels.csv").unlink()
    (batch / cheapest.video).unlink()
    stale = batch / (cheapest.video.replace("/000.", "/.000.") + ".123.partial")
    stale.write_bytes(b"half")
    generate_realistic_stream(landing, TINY, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 1)] and not stale.exists()
    assert (batch / cheapest.video).read_bytes() == original and (batch / "labels.csv").read_bytes() == labels


def test_a_1080p_clip_is_streamed_not_held_in_memory(tmp_path):
    """5 s of 1080p at 30 fps is 150 frames of 6 MB (900 MB as RGB): the writer must hold a few.

    In webm: VP9 holds the most encoder state (~180 MB at 1080p, whatever the length; x264 here
    ~50-80 MB), so this bounds every container; and it encodes fastest at 1080p."""
    script = textwrap.dedent(f"""
        import resource
        import torch
        from vidcil.io.realistic import RealisticClip, write_clip
        warm = RealisticClip("w.mp4", "zoom_in", "train", (0,), 426, 240, 10, 0.5, "mp4")
        torch.set_num_threads(1)
        write_clip({str(tmp_path / "warm.mp4")!r}, warm)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        clip = RealisticClip("x.webm", "slide_right", "train", (1,), 1920, 1080, 30, 5.0, "webm", noise=0.0)
        write_clip({str(tmp_path / "big.webm")!r}, clip)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) < 300, f"peak memory grew by {out.stdout.strip()} MB"
    with av.open(str(tmp_path / "big.webm")) as container:
        sizes = [(f.width, f.height) for f in container.decode(video=0)]
    assert sizes == [(1920, 1080)] * 150
