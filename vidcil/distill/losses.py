"""Knowledge-distillation losses, behind a small registry (``DISTILLERS``).

Time-space decomposed distillation (TSD): from backbone features ``X [N, T, C, H, W]``

- temporal feature = concat(pool_W(X), pool_H(X)) -> ``[N, T, C, H + W]`` (keeps T),
- spatial feature  = pool_T(X)                     -> ``[N, C, H, W]``,

and the loss is ``alpha * L_temporal + (1 - alpha) * L_spatial``, each the L2 distance between
teacher and student features, averaged over the clips of the batch and the distilled stages.
The training loss is ``CE + lambda * L_distil`` (see :mod:`vidcil.training`).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F

Pooling = Literal["mean", "max"]


def _pool(x: torch.Tensor, dim: int, pooling: Pooling) -> torch.Tensor:
    return x.mean(dim=dim) if pooling == "mean" else x.amax(dim=dim)


def temporal_feature(x: torch.Tensor, pooling: Pooling = "mean") -> torch.Tensor:
    """``[N, T, C, H, W]`` -> ``[N, T, C, H + W]``: pooled over W (keeps H) and over H (keeps W)."""
    return torch.cat([_pool(x, -1, pooling), _pool(x, -2, pooling)], dim=-1)


def spatial_feature(x: torch.Tensor, pooling: Pooling = "mean") -> torch.Tensor:
    """``[N, T, C, H, W]`` -> ``[N, C, H, W]``: pooled over time."""
    return _pool(x, 1, pooling)


def l2_distance(student: torch.Tensor, teacher: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mean over the batch of ``||s - t||_2`` on each clip's flattened feature.

    With ``normalize`` both features are first scaled to unit L2 norm per clip (as PODNet does), so
    the loss does not depend on the feature scale of the stage or the architecture.
    """
    s, t = student.flatten(1), teacher.flatten(1)
    if s.shape != t.shape:
        raise ValueError(
            f"student feature {tuple(student.shape)} and teacher feature {tuple(teacher.shape)} "
            "differ; distil from a stage where both have the same channels and size"
        )
    if normalize:
        s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
    return (s - t).norm(dim=1).mean()


class TimeSpaceDistillation:
    """TSD loss between dicts of stage features (``{stage: [N, T, C, H, W]}``)."""

    def __init__(self, alpha: float = 0.5, pooling: Pooling = "mean", normalize: bool = True):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha, self.pooling, self.normalize = alpha, pooling, normalize

    def __call__(
        self, student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Returns the named terms ``temporal``, ``spatial`` and their weighted sum ``distil``."""
        if not student:
            raise ValueError("no stage features to distil")
        temporal = spatial = 0.0
        for stage, s in student.items():
            t = teacher[stage].detach()
            temporal = temporal + l2_distance(
                temporal_feature(s, self.pooling), temporal_feature(t, self.pooling), self.normalize
            )
            spatial = spatial + l2_distance(
                spatial_feature(s, self.pooling), spatial_feature(t, self.pooling), self.normalize
            )
        temporal, spatial = temporal / len(student), spatial / len(student)
        distil = self.alpha * temporal + (1 - self.alpha) * spatial
        return {"temporal": temporal, "spatial": spatial, "distil": distil}


DISTILLERS: dict[str, Callable[..., TimeSpaceDistillation]] = {"tsd": TimeSpaceDistillation}
