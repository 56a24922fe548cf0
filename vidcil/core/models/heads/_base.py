"""What every head is: an encoder and a classifier (``_``: not a head kind; torch is imported here,
not in the registry, so reading params stays light)."""

from __future__ import annotations

import torch
from torch import nn


class Head(nn.Module):
    """``encode`` then ``classify``. ``self.encoder``: the learnt temporal encoder (None: there is none)."""

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, T, C, H, W]`` -> ``[N, D]``."""
        raise NotImplementedError

    def classify(self, encoded: torch.Tensor) -> torch.Tensor:
        """``[N, D]`` -> logits ``[N, K]``."""
        return self.classifier(self.dropout(encoded))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classify(self.encode(features))


class FrameEncoderHead(Head):
    """Frames pooled over H and W (``[N, T, C]``), projected to ``frame_dim`` when it differs from C,
    then a temporal encoder over the frames.

    The projection belongs to the feature extractor, not to the encoder: a student with a smaller
    backbone keeps the teacher's ``frame_dim`` so that it can take the teacher's encoder as it is.
    """

    def __init__(self, in_features: int, frame_dim: int | None):
        super().__init__()
        self.frame_dim = frame_dim or in_features
        self.project = nn.Identity() if self.frame_dim == in_features else nn.Linear(in_features, self.frame_dim)

    def frames(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, T, C, H, W]`` -> ``[N, T, frame_dim]``."""
        return self.project(features.mean(dim=(-2, -1)))
