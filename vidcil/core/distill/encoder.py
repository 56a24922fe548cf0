"""Encoder-output distillation, for a student that reuses the teacher's frozen temporal encoder.

The student (``student.reuse_encoder``: a smaller feature extractor, the teacher's encoder copied
and frozen) learns to make frame features that the shared encoder turns into the teacher's
encoding: ``distil`` = a weighted sum of distances between the two encoders' outputs ``[N, D]``
(``l1``: mean absolute difference, ``l2``: mean squared difference, ``cosine``: 1 - cosine
similarity, ``kl``: KL(teacher || student) of their softmaxes), and the task loss weighs
``ce_weight`` (0.1 by default) against it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from vidcil.core.distill import DISTILLERS, DistillerConfig
from vidcil.core.losses import masked_mean

DISTANCES = ("l1", "l2", "cosine", "kl")


class EncoderConfig(DistillerConfig):
    kind: Literal["encoder"] = "encoder"
    ce_weight: float = Field(0.1, ge=0)
    stages: tuple[str, ...] = ("encoder",)  # the head's encoding, not a backbone stage
    distances: dict[str, float] = {"l2": 1.0}  # distance -> weight

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if tuple(v) != ("encoder",):
            raise ValueError(f"the encoder distiller compares the encoders' outputs: stages must be ['encoder'], got {list(v)}")
        return v

    @field_validator("distances")
    @classmethod
    def _distances(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k in v if k not in DISTANCES]
        if bad or not v or any(w < 0 for w in v.values()):
            raise ValueError(f"distances {v}: name some of {', '.join(DISTANCES)}, each with a weight >= 0")
        return v


def encoder_distance(student: torch.Tensor, teacher: torch.Tensor, distance: str) -> torch.Tensor:
    """Per-clip distance ``[N]`` between encodings ``[N, D]``."""
    s, t = student.float(), teacher.float()
    if distance == "l1":
        return (s - t).abs().mean(dim=1)
    if distance == "l2":
        return (s - t).pow(2).mean(dim=1)
    if distance == "cosine":
        return 1 - F.cosine_similarity(s, t, dim=1)
    if distance == "kl":
        return F.kl_div(F.log_softmax(s, dim=1), F.log_softmax(t, dim=1), reduction="none", log_target=True).sum(dim=1)
    raise ValueError(f"unknown distance {distance!r}; choose from {', '.join(DISTANCES)}")


@DISTILLERS.register(EncoderConfig)
class EncoderDistillation:
    uses_features = True

    def __init__(self, distances: dict[str, float] | None = None):
        self.distances = dict(distances or {"l2": 1.0})
        self.parts = {"encoder": 1.0}

    def __call__(self, student, teacher, student_logits=None, teacher_logits=None, mask=None):
        if "encoder" not in student:
            raise ValueError("the encoder distiller needs the encoders' outputs (stages: ['encoder'])")
        t = teacher["encoder"].detach()
        terms = {name: masked_mean(encoder_distance(student["encoder"], t, name), mask) for name in self.distances}
        encoder = sum(w * terms[name] for name, w in self.distances.items())
        return {**{f"encoder_{k}": v for k, v in terms.items()}, "encoder": encoder, "distil": encoder}
