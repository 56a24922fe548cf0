"""The decoded-frame cache: decode once, bounded, corrupt entries rebuilt, filled by validation."""

import numpy as np
import pytest
import torch

from tests.conftest import moving_square
from vidcil.io.cache import FrameCache
from vidcil.io.clips import ClipDataset, ClipRef
from vidcil.io.contract import sha256_file
from vidcil.io.transforms import clip_transform
from vidcil.io.validation import Rules, validate_batch
from vidcil.io.video import WorkingFrames, decode_working, write_video
from vidcil.core.training import train
from vidcil.core.models.tsm import VideoRecognizer


def _videos(folder, n, size=64):
    paths = []
    for i in range(n):
        p = folder / f"v{i}.mp4"
        write_video(p, np.stack([np.roll(f, i * 3, axis=1) for f in moving_square(12, size=size)]))
        paths.append(p)
    return paths


def test_working_frames_are_downscaled_even_and_at_most_max_frames(tmp_path):
    path = tmp_path / "wide.mp4"
    write_video(path, np.zeros((40, 90, 160, 3), np.uint8))
    frames = decode_working(path, short_side=32, max_frames=16)
    assert frames.shape[1:] == (32, 56, 3)  # 160 x 90 -> short side 32, even sides
    assert 8 <= len(frames) <= 16  # evenly spaced over all 40
    small = decode_working(path, short_side=200, max_frames=64)
    assert small.shape == (40, 90, 160, 3)  # never upscaled
    collected = WorkingFrames(32, 8)
    assert collected.max_frames == 8


def test_a_second_epoch_decodes_nothing(tmp_path):
    cache = FrameCache(tmp_path / "cache", short_side=32, max_frames=16, max_bytes=10**9)
    refs = [ClipRef(p, i % 2, sha256=sha256_file(p)) for i, p in enumerate(_videos(tmp_path, 4, size=32))]
    data = ClipDataset(refs, clip_transform(4, 32, train=True), cache)
    model = VideoRecognizer("resnet18", 2, num_segments=4, dropout=0.0)
    train(model, data, epochs=1, batch_size=2, lr=0.01, weight_decay=0.0, seed=0)
    assert cache.decodes == 4  # first touch: each video once
    train(model, data, epochs=2, batch_size=2, lr=0.01, weight_decay=0.0, seed=0)
    assert cache.decodes == 4  # later epochs read the cache only
    assert cache.size_bytes() > 0 and len(cache.entries()) == 4


def test_eviction_under_a_small_limit_gives_the_same_frames(tmp_path):
    paths = _videos(tmp_path, 4, size=32)
    big = FrameCache(tmp_path / "big", 32, 16, max_bytes=10**9)
    one = big.frames(paths[0]).nbytes
    small = FrameCache(tmp_path / "small", 32, 16, max_bytes=int(one * 2.5))  # room for two entries
    transform = clip_transform(4, 32, train=False)
    refs = [ClipRef(p, 0) for p in paths]
    for _ in range(2):
        a = torch.stack([x for x, _ in ClipDataset(refs, transform, big)])
        b = torch.stack([x for x, _ in ClipDataset(refs, transform, small)])
        assert torch.equal(a, b)
        assert small.size_bytes() <= int(one * 2.5) and len(small.entries()) == 2
    assert small.decodes > len(paths)  # evicted entries were decoded again, not lost


def test_a_corrupt_entry_is_rebuilt_not_trusted(tmp_path):
    (path,) = _videos(tmp_path, 1, size=32)
    cache = FrameCache(tmp_path / "cache", 32, 16, max_bytes=10**9)
    good = np.array(cache.frames(path))
    entry = cache.entry(sha256_file(path))
    raw = bytearray(entry.read_bytes())
    raw[-100:] = bytes(255 - b for b in raw[-100:])  # flipped bytes in the frames, header intact
    entry.write_bytes(bytes(raw))
    fresh = FrameCache(tmp_path / "cache", 32, 16, max_bytes=10**9)  # a new process
    assert np.array_equal(fresh.frames(path), good) and fresh.decodes == 1
    entry.write_bytes(entry.read_bytes()[:200])  # truncated
    assert np.array_equal(FrameCache(tmp_path / "cache", 32, 16, 10**9).frames(path), good)


def test_validation_fills_the_cache_in_its_decoding_pass(tmp_path):
    batch = tmp_path / "b000"
    rows = ["video,label,split"]
    for i, p in enumerate(_videos(batch, 4, size=32)):
        rows.append(f"{p.name},{'ab'[i % 2]},{'train' if i < 2 else 'test'}")
    (batch / "labels.csv").write_text("\n".join(rows) + "\n")
    cache = FrameCache(tmp_path / "cache", 32, 16, max_bytes=10**9)
    verdict = validate_batch(batch, Rules(min_frames=4, min_train_per_class=1, min_test_per_class=1),
                             tmp_path / "report", cache=cache)
    assert verdict.accepted and len(cache.entries()) == 4
    reader = FrameCache(tmp_path / "cache", 32, 16, max_bytes=10**9)
    for sha, video in zip(verdict.accepted_rows["sha256"], verdict.accepted_rows["video"]):
        reader.frames(batch / video, sha)
    assert reader.decodes == 0  # training starts warm
