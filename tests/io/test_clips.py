import numpy as np
import torch
import pytest

from vidcil.core.loader import SeededSampler, clip_loader
from vidcil.io.clips import ClipDataset, ClipRef, DirectDecode
from vidcil.io.transforms import clip_transform, sample_indices
from vidcil.io.video import VideoDecodeError, decode_video, probe_video, write_video
from tests.conftest import moving_square


def test_test_time_sampling_takes_segment_centres():
    assert sample_indices(16, 8, train=False).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert sample_indices(8, 8, train=False).tolist() == list(range(8))


def test_training_sampling_stays_in_its_segment_and_in_order():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = sample_indices(20, 4, train=True, rng=rng)
        assert (np.diff(idx) > 0).all()
        assert all(5 * s <= i < 5 * (s + 1) for s, i in enumerate(idx))


def test_fewer_frames_than_segments_repeats_them_in_order():
    # A keyframe memory of 3 frames, 8 segments: every keyframe used, temporal order kept.
    idx = sample_indices(3, 8, train=True)
    assert idx.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert sample_indices(1, 4, train=False).tolist() == [0, 0, 0, 0]


def test_mp4_round_trip_is_real_h264_and_deterministic(tmp_path):
    frames = moving_square(12, size=32)
    size = write_video(tmp_path / "a.mp4", frames, fps=8)
    write_video(tmp_path / "b.mp4", frames, fps=8)
    assert size == (tmp_path / "a.mp4").stat().st_size
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    probe = probe_video(tmp_path / "a.mp4")
    assert (probe.frames, probe.width, probe.height, probe.codec) == (12, 32, 32, "h264")
    assert probe.duration_s == pytest.approx(1.5)
    decoded = decode_video(tmp_path / "a.mp4")
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 4  # lossy, but close


def test_undecodable_file_names_the_file(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(VideoDecodeError, match="notes.mp4"):
        decode_video(bad)


def test_dataset_yields_model_input_at_the_input_size(tmp_path):
    write_video(tmp_path / "a.mp4", moving_square(12, size=32))
    data = ClipDataset([ClipRef(tmp_path / "a.mp4", 3)], clip_transform(4, 24, train=False, short_side=32),
                       DirectDecode(short_side=32))
    x, y = data[0]
    assert x.shape == (4, 3, 24, 24) and x.dtype.is_floating_point and y == 3
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_seeded_sampling_is_the_same_with_any_number_of_workers(tmp_path):
    refs = []
    for i in range(6):
        write_video(tmp_path / f"{i}.mp4", moving_square(12, size=32, jumps=(2 + i % 4, 9)))
        refs.append(ClipRef(tmp_path / f"{i}.mp4", i % 2))
    data = ClipDataset(refs, clip_transform(4, 24, train=True), DirectDecode(short_side=32))

    def epoch(workers, e):
        loader = clip_loader(data, batch_size=2, train=True, seed=7, num_workers=workers)
        loader.sampler.set_epoch(e)
        return torch.cat([x for x, _ in loader])

    zero, two = epoch(0, 1), epoch(2, 1)
    assert torch.equal(zero, two)  # same frames, same crops: randomness is per item, not per worker
    assert not torch.equal(zero, epoch(0, 2))  # a new epoch draws anew
    assert sorted(i for i, _ in SeededSampler(6, 7, shuffle=True)) == list(range(6))


def test_60_fps_in_a_millisecond_time_base_is_a_constant_rate(tmp_path):
    from vidcil.io.realistic import RealisticClip, write_clip

    for ext in ("mkv", "webm"):  # 1 ms ticks: frames 16 or 17 ms apart
        path = tmp_path / f"a.{ext}"
        write_clip(path, RealisticClip(path.name, "slide_right", "train", (0,), 426, 240, 60, 1.0, ext))
        probe = probe_video(path)
        assert not probe.variable_frame_rate and probe.fps == pytest.approx(60, abs=0.5), ext


def test_a_dataset_with_stored_logits_yields_them_nan_padded_to_the_widest(tmp_path):
    write_video(tmp_path / "a.mp4", moving_square(12, size=32))
    refs = [ClipRef(tmp_path / "a.mp4", 0, logits=(1.5, -2.0)), ClipRef(tmp_path / "a.mp4", 2, logits=(0.5, 1.0, 3.0)),
            ClipRef(tmp_path / "a.mp4", 1)]  # a clip of the new batch: nothing stored
    data = ClipDataset(refs, clip_transform(4, 24, train=False, short_side=32), DirectDecode(short_side=32))
    (_, y0, z0), (_, _, z1), (_, _, z2) = data[0], data[1], data[2]
    assert y0 == 0 and z0[:2].tolist() == [1.5, -2.0] and z0[2].isnan()
    assert z1.tolist() == [0.5, 1.0, 3.0] and z2.isnan().all()
    x, *rest = next(iter(clip_loader(data, batch_size=3, train=False)))
    assert x.shape[0] == 3 and rest[1].shape == (3, 3)
    plain = ClipDataset(refs[2:], clip_transform(4, 24, train=False, short_side=32), DirectDecode(short_side=32))
    assert len(plain[0]) == 2  # no stored logits: items as before
