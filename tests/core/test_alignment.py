import torch

from vidcil.core.alignment import align_trajectory, object_centroids, trajectory_shifts
from vidcil.core.features import l2_distance, spatial_feature


def blob_clip(xs, ys, size=16, channels=4, background=0.0, seed=0):
    """``[1, T, C, H, W]``: a Gaussian blob at (xs[t], ys[t]) in frame t, over an optional noisy background."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    frames = [torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 3.0) for x, y in zip(xs, ys)]
    clip = torch.stack(frames)[None, :, None].repeat(1, 1, channels, 1, 1)
    clip = clip * torch.linspace(1.0, 2.0, channels).view(1, 1, channels, 1, 1)
    return clip + background * torch.rand(clip.shape, generator=g)


def test_centroids_follow_the_object():
    clip = blob_clip([3, 6, 9, 12], [8, 8, 8, 8])
    c = object_centroids(clip)[0]
    assert torch.allclose(c[:, 0], torch.tensor([3.0, 6.0, 9.0, 12.0]), atol=0.3)
    assert torch.allclose(c[:, 1], torch.full((4,), 8.0), atol=0.3)


def test_aligned_spatial_feature_of_a_moving_object_matches_a_static_one():
    moving = blob_clip([4, 6, 8, 10, 12], [5, 6, 7, 8, 9], background=0.05)
    static = blob_clip([8] * 5, [7] * 5, background=0.05)  # at the moving blob's mean position
    plain = l2_distance(spatial_feature(moving), spatial_feature(static), normalize=True)
    aligned = l2_distance(spatial_feature(moving, shifts=trajectory_shifts(moving)),
                          spatial_feature(static, shifts=trajectory_shifts(static)), normalize=True)
    assert plain > 0.5  # pooled over T, the moving blob is a smear along its path
    assert aligned < 0.1 * plain  # aligned, it is the blob again
    # A static object needs no alignment: its shifts are ~0 and its feature is unchanged.
    assert trajectory_shifts(static).abs().max() < 0.05
    assert torch.allclose(align_trajectory(static), static, atol=0.02)


def test_alignment_passes_gradients_to_the_features():
    clip = blob_clip([4, 8, 12], [8, 8, 8]).requires_grad_(True)
    spatial_feature(clip, shifts=trajectory_shifts(clip)).sum().backward()
    assert clip.grad is not None and clip.grad.abs().sum() > 0


def test_a_frame_with_no_standout_object_is_not_moved():
    flat = torch.ones(1, 3, 2, 8, 8)
    assert torch.allclose(trajectory_shifts(flat), torch.zeros(1, 3, 2))
