"""Time-space decomposed distillation (TSD, ours).

``L = alpha * L_temporal + (1 - alpha) * L_spatial``: each the L2 distance between the teacher's and
the student's temporal (pooled over H and W, keeps T) and spatial (pooled over T) features
(:mod:`vidcil.core.features`), averaged over the clips of the batch and the distilled stages. With
``align`` the spatial feature is pooled after aligning the frames along the object's trajectory,
with the teacher's shifts applied to both.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vidcil.core.alignment import trajectory_shifts
from vidcil.core.distill import DISTILLERS, DistillerConfig
from vidcil.core.features import Features, Pooling, check_stages, l2_distance, spatial_feature, temporal_feature


class TSDConfig(DistillerConfig):
    kind: Literal["tsd"] = "tsd"
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the temporal term
    pooling: Pooling = "mean"
    normalize: bool = True
    align: bool = False  # align frames along the object's trajectory before pooling over T


@DISTILLERS.register(TSDConfig)
class TimeSpaceDistillation:
    """TSD loss between dicts of stage features (``{stage: [N, T, C, H, W]}``)."""

    uses_features = True

    def __init__(self, alpha: float = 0.5, pooling: Pooling = "mean", normalize: bool = True, align: bool = False):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha, self.pooling, self.normalize, self.align = alpha, pooling, normalize, align
        self.parts = {"temporal": alpha, "spatial": 1 - alpha}  # the terms, as shares of ``distil``

    def __call__(self, student: Features, teacher: Features, student_logits=None, teacher_logits=None, mask=None):
        """Returns the named terms ``temporal``, ``spatial`` and their weighted sum ``distil``."""
        student = check_stages(student)
        temporal = spatial = 0.0
        for stage, s in student.items():
            t = teacher[stage].detach()
            shifts = trajectory_shifts(t) if self.align else None
            temporal = temporal + l2_distance(
                temporal_feature(s, self.pooling), temporal_feature(t, self.pooling), self.normalize, mask
            )
            spatial = spatial + l2_distance(
                spatial_feature(s, self.pooling, shifts), spatial_feature(t, self.pooling, shifts), self.normalize, mask
            )
        temporal, spatial = temporal / len(student), spatial / len(student)
        distil = self.alpha * temporal + (1 - self.alpha) * spatial
        return {"temporal": temporal, "spatial": spatial, "distil": distil}
