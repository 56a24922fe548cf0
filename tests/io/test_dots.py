"""The dots stream: the class is the flow (measured on the rendered frames), never a frame's look,
and the files are the same bytes on every run."""

from __future__ import annotations

import csv
import hashlib

import av
import numpy as np
import pytest

from vidcil.io.dots import FLOWS, DotBatch, dots_stream, flow, generate_dots_stream, render_dots_clip


def shift(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(dx, dy) that best maps frame ``a`` onto frame ``b`` (the peak of their circular cross-correlation)."""
    a, b = (f.mean(-1) - f.mean() for f in (a.astype(float), b.astype(float)))
    corr = np.fft.ifft2(np.fft.fft2(a).conj() * np.fft.fft2(b)).real
    dy, dx = np.unravel_index(corr.argmax(), corr.shape)
    n = a.shape[0]
    return (dx + n // 2) % n - n // 2, (dy + n // 2) % n - n // 2


@pytest.mark.parametrize("name, direction", [("drift_right", (1, 0)), ("drift_left", (-1, 0)),
                                             ("drift_down", (0, 1)), ("drift_up", (0, -1))])
def test_a_drift_moves_the_dots_in_its_direction(name, direction):
    clip = render_dots_clip(name, np.random.default_rng(1), n_frames=16, size=64)
    shifts = np.array([shift(clip[f], clip[f + 1]) for f in range(15)])
    assert (np.sign(shifts.mean(0)) == direction).all(), shifts.mean(0)


def test_fields_turn_and_scale_the_way_their_names_say():
    p = np.array([[0.5, 0.0], [0.0, 0.5]])  # right of and below the centre (y points down)
    centre = np.zeros(2)
    cw = flow("spin_cw", p, 0.0, centre, 1.0)
    assert cw[0, 1] > 0 and cw[1, 0] < 0  # right goes down, below goes left: clockwise on screen
    assert np.allclose(flow("spin_ccw", p, 0.0, centre, 1.0), -cw)
    assert (flow("expand", p, 0.0, centre, 1.0) * p).sum(1).min() > 0  # away from the centre
    assert np.allclose(flow("contract", p, 0.0, centre, 1.0), -flow("expand", p, 0.0, centre, 1.0))
    start, middle = (flow("oscillate_horizontal", p, t, centre, 1.0)[0, 0] for t in (0.0, 0.5))
    assert start > 0 > middle  # right, then left
    with pytest.raises(ValueError, match="unknown flow"):
        flow("teleport", p, 0.0, centre, 1.0)


def test_no_frame_tells_the_flow():
    """The first frame is drawn before the flow is looked at: the same draw gives the same frame for
    every flow, so the class lives in the motion alone."""
    clips = [render_dots_clip(name, np.random.default_rng(7), n_frames=4, size=32) for name in FLOWS]
    assert all(np.array_equal(c[0], clips[0][0]) for c in clips)
    assert not all(np.array_equal(c[-1], clips[0][-1]) for c in clips)


def test_the_shift_batch_is_harder_footage_of_every_flow_seen():
    specs = dots_stream(3, True)
    assert [s.classes for s in specs[:3]] == [FLOWS[:4], FLOWS[4:6], FLOWS[6:8]]
    assert specs[3].classes == FLOWS[:8]
    assert specs[3].coherence[1] < specs[0].coherence[1] and specs[3].noise > specs[0].noise


def test_the_stream_is_written_in_the_contract_and_the_same_bytes_twice(tmp_path):
    specs = [DotBatch("b000", ("drift_right", "spin_cw"), 2, 1)]
    digests = []
    for run in ("one", "two"):
        (folder,) = generate_dots_stream(tmp_path / run, specs, n_frames=8, size=32)
        with open(folder / "labels.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 6 and {r["split"] for r in rows} == {"train", "test"}
        digests.append({r["video"]: hashlib.sha256((folder / r["video"]).read_bytes()).hexdigest() for r in rows})
        with av.open(str(folder / rows[0]["video"])) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 8 and frames[0].shape == (32, 32, 3)
    assert digests[0] == digests[1]
