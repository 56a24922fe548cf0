"""Trajectory alignment of feature maps before pooling over time.

Pooling ``[N, T, C, H, W]`` over T blurs a moving object along its path. Aligning first shifts
each frame's map so the dominant object stays where it is on average over the clip; the pooled
spatial feature then describes the object, not its trail.

The object's position in a frame is the centroid of its activation energy (``sum_C x^2``) above
the frame's median, so a flat or textured background does not pull it. Shifts are sub-pixel
(bilinear ``grid_sample``), zero-padded, and differentiable in the features (not in the shifts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def object_centroids(x: torch.Tensor) -> torch.Tensor:
    """``[N, T, C, H, W]`` -> ``[N, T, 2]``: the (x, y) centroid of each frame's activation energy, in pixels."""
    n, t, _, h, w = x.shape
    energy = x.float().pow(2).sum(dim=2)  # [N, T, H, W]
    floor = energy.flatten(2).median(dim=2).values[..., None, None]
    mass = (energy - floor).clamp_min(0)
    total = mass.sum(dim=(-2, -1))
    flat = total <= 1e-12  # no object stands out: the frame centre, i.e. no shift
    total = torch.where(flat, torch.ones_like(total), total)
    ys = torch.arange(h, dtype=mass.dtype, device=x.device)
    xs = torch.arange(w, dtype=mass.dtype, device=x.device)
    cx = (mass.sum(dim=-2) * xs).sum(-1) / total
    cy = (mass.sum(dim=-1) * ys).sum(-1) / total
    cx = torch.where(flat, torch.full_like(cx, (w - 1) / 2), cx)
    cy = torch.where(flat, torch.full_like(cy, (h - 1) / 2), cy)
    return torch.stack([cx, cy], dim=-1)


def trajectory_shifts(x: torch.Tensor) -> torch.Tensor:
    """``[N, T, 2]`` shifts (dx, dy) in pixels that move each frame's object to its mean position."""
    c = object_centroids(x)
    return c.mean(dim=1, keepdim=True) - c


def shift_frames(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Translate each frame of ``x [N, T, C, H, W]`` by ``shifts [N, T, 2]`` pixels (zeros enter)."""
    n, t, c, h, w = x.shape
    theta = torch.zeros(n * t, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    # grid_sample reads the input at the output position + offset: move content by +d, read at -d.
    d = shifts.reshape(n * t, 2).to(x.dtype)
    theta[:, 0, 2] = -2.0 * d[:, 0] / w
    theta[:, 1, 2] = -2.0 * d[:, 1] / h
    grid = F.affine_grid(theta, [n * t, c, h, w], align_corners=False)
    out = F.grid_sample(x.reshape(n * t, c, h, w), grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)
    return out.view(n, t, c, h, w)


def align_trajectory(x: torch.Tensor, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """``x [N, T, C, H, W]`` with every frame moved so the dominant object stays put.

    ``shifts``: use these (e.g. the teacher's) instead of estimating them from ``x``, so teacher
    and student features are aligned the same way.
    """
    return shift_frames(x, trajectory_shifts(x) if shifts is None else shifts)
