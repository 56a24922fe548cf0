"""Average consensus (TSN): per-frame global average pool, mean over T, dropout, classifier."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vidcil.core.models.classifier import IncrementalLinear
from vidcil.core.models.heads import HEADS
from vidcil.core.models.heads._base import Head
from vidcil.core.registry import PluginConfig


class AverageConfig(PluginConfig):
    kind: Literal["average"] = "average"


@HEADS.register(AverageConfig)
class ConsensusHead(Head):
    """Per-frame global average pool, average consensus over T, dropout, classifier (no learnt encoder)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.encoder = None
        self.dropout = nn.Dropout(dropout)
        self.classifier = IncrementalLinear(in_features, num_classes)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, T, C, H, W]`` -> ``[N, C]``."""
        return features.mean(dim=(-2, -1)).mean(dim=1)
