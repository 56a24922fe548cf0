"""Average consensus (TSN): per-frame global average pool, mean over T, dropout, classifier."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vidcil.core.models.classifier import IncrementalLinear
from vidcil.core.models.heads import HEADS
from vidcil.core.registry import PluginConfig


class AverageConfig(PluginConfig):
    kind: Literal["average"] = "average"


@HEADS.register(AverageConfig)
class ConsensusHead(nn.Module):
    """Per-frame global average pool, average consensus over T, dropout, classifier."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = IncrementalLinear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: ``[N, T, C, H, W]`` -> logits ``[N, K]``."""
        pooled = features.mean(dim=(-2, -1)).mean(dim=1)
        return self.classifier(self.dropout(pooled))
