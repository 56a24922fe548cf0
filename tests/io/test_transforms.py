"""The clip transforms: any frame size in, the model's input size out; evaluation deterministic;
flip only when allowed."""

import numpy as np
import pytest
import torch

from vidcil.io.transforms import CenterCrop, Clip, RandomResizedCrop, clip_transform


def _frames(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("n,h,w", [(16, 64, 64), (40, 128, 228), (30, 228, 128), (3, 90, 160), (1, 17, 301),
                                   (64, 720, 1280)])
@pytest.mark.parametrize("train", [True, False])
def test_every_frame_shape_becomes_the_input_size(n, h, w, train):
    x = clip_transform(8, 112, train=train, short_side=128)(_frames(n, h, w), np.random.default_rng(1))
    assert x.shape == (8, 3, 112, 112) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_evaluation_is_deterministic_and_takes_the_centre():
    frames = _frames(20, 128, 228)
    evaluate = clip_transform(4, 112, train=False, short_side=128)
    a, b = evaluate(frames, np.random.default_rng(1)), evaluate(frames, np.random.default_rng(2))
    assert torch.equal(a, b)
    # 112 of the 128 short side, centred, is taken as it is (no resampling at the working resolution)
    expected = torch.from_numpy(frames[[2, 7, 12, 17], 8:120, 58:170]).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(a, expected)


def test_training_crops_vary_but_every_frame_of_a_clip_gets_the_same_crop():
    frames = np.repeat(_frames(1, 96, 160), 8, axis=0)  # one image, eight times
    train = clip_transform(8, 64, train=True, crop_scale=(0.3, 0.6))
    x = train(frames, np.random.default_rng(0))
    assert all(torch.equal(x[0], x[t]) for t in range(8))  # same window on every frame: motion is kept
    assert not torch.equal(x, train(frames, np.random.default_rng(1)))
    assert torch.equal(x, train(frames, np.random.default_rng(0)))  # seeded


def test_random_resized_crop_stays_inside_the_frame_and_in_its_area_range():
    crop = RandomResizedCrop(32, scale=(0.4, 0.8))
    rng = np.random.default_rng(0)
    for _ in range(200):
        y, x, ch, cw = crop.window(50, 300, rng)
        assert 0 <= y and y + ch <= 50 and 0 <= x and x + cw <= 300 and ch > 0 and cw > 0
    assert CenterCrop(16)(Clip(_frames(2, 40, 30))).frames.shape == (2, 3, 16, 16)


def _left_bright():
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    frames[:, :, :16] = 255
    return frames


@pytest.mark.parametrize("flip", [False, True])
def test_horizontal_flip_only_when_allowed(flip):
    train = clip_transform(4, 32, train=True, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=flip)
    flipped = 0
    for seed in range(40):
        x = train(_left_bright(), np.random.default_rng(seed))
        flipped += bool(x[0, 0, 0, -1] > x[0, 0, 0, 0])  # bright side moved to the right
    assert (flipped > 5) if flip else (flipped == 0)  # off by default: motion direction is often the class
