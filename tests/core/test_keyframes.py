import numpy as np
import pytest

from tests.conftest import moving_square
from vidcil.core.memory.frames.keyframes import frame_distance, select_keyframes


def test_issue_example_keeps_frames_1_4_9():
    # 12 frames: 2-3 close to 1, 4 moves away, 5-8 close to 4, 9 moves away, 10-12 close to 9.
    frames = moving_square(12, jumps=(3, 8))
    assert select_keyframes(frames, threshold=0.05) == [0, 3, 8]  # frames 1, 4 and 9


def test_distance_is_to_the_latest_keyframe_not_the_previous_frame():
    # A slow drift: each step is small, but it adds up against the latest keyframe.
    frames = np.zeros((10, 16, 16, 3), dtype=np.uint8)
    for t in range(10):
        frames[t] = t * 10
    step = frame_distance(frames[1], frames[0])
    keys = select_keyframes(frames, threshold=2.5 * step)
    assert keys == [0, 3, 6, 9]


def test_threshold_zero_keeps_every_frame_and_huge_keeps_the_first():
    frames = moving_square(6, jumps=(2,))
    assert select_keyframes(frames, 0.0) == list(range(6))
    assert select_keyframes(frames, 10.0) == [0]
    with pytest.raises(ValueError):
        select_keyframes(frames[:0], 0.1)
