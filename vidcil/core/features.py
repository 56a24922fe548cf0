"""Features that distillers compare, from backbone stage features ``X [N, T, C, H, W]``.

- temporal feature = concat(pool_W(X), pool_H(X)) -> ``[N, T, C, H + W]`` (keeps T);
- spatial feature  = pool_T(X)                     -> ``[N, C, H, W]``;
- PODNet's pooled spatial feature with time folded into the channels (TCD's baseline).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from vidcil.core.alignment import align_trajectory
from vidcil.core.losses import masked_mean

Pooling = Literal["mean", "max"]
Features = dict[str, torch.Tensor]  # {stage: [N, T, C, H, W]}


def _pool(x: torch.Tensor, dim: int, pooling: Pooling) -> torch.Tensor:
    return x.mean(dim=dim) if pooling == "mean" else x.amax(dim=dim)


def temporal_feature(x: torch.Tensor, pooling: Pooling = "mean") -> torch.Tensor:
    """``[N, T, C, H, W]`` -> ``[N, T, C, H + W]``: pooled over W (keeps H) and over H (keeps W)."""
    return torch.cat([_pool(x, -1, pooling), _pool(x, -2, pooling)], dim=-1)


def spatial_feature(x: torch.Tensor, pooling: Pooling = "mean", shifts: torch.Tensor | None = None) -> torch.Tensor:
    """``[N, T, C, H, W]`` -> ``[N, C, H, W]``: pooled over time.

    ``shifts [N, T, 2]``: first align the frames along the object's trajectory by these shifts.
    """
    if shifts is not None:
        x = align_trajectory(x, shifts)
    return _pool(x, 1, pooling)


def pod_spatial_feature(x: torch.Tensor) -> torch.Tensor:
    """PODNet's pooled spatial feature with time folded into channels: ``[N, T, C, H, W]`` -> ``[N, T*C*(H+W)]``.

    Squared activations summed over W (keeps H) and over H (keeps W), as in PODNet's POD-spatial.
    """
    a = x.flatten(1, 2).pow(2)  # [N, T*C, H, W]
    return torch.cat([a.sum(dim=-1).flatten(1), a.sum(dim=-2).flatten(1)], dim=1)


def l2_distance(student: torch.Tensor, teacher: torch.Tensor, normalize: bool = True,
                mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch (the clips in ``mask [N]``, if given) of ``||s - t||_2`` on each clip's flattened feature.

    With ``normalize`` both features are first scaled to unit L2 norm per clip (as PODNet does), so
    the loss does not depend on the feature scale of the stage or the architecture.
    """
    s, t = student.flatten(1), teacher.flatten(1)
    if s.shape != t.shape:
        raise ValueError(
            f"student feature {tuple(student.shape)} and teacher feature {tuple(teacher.shape)} "
            "differ; distil from a stage where both have the same channels and size, or match the "
            "channels (distil.match: sparse | hungarian)"
        )
    if normalize:
        s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
    return masked_mean((s - t).norm(dim=1), mask)


def check_stages(student: Features) -> Features:
    """The backbone stages' features among ``student`` (not the encoder's ``[N, D]``)."""
    stages = {k: v for k, v in student.items() if v.dim() == 5}
    if not stages:
        raise ValueError("no stage features to distil; configure distil.stages")
    return stages
