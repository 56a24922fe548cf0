"""A (bidirectional) LSTM over the frame features: the clip is the last hidden state of each direction."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from vidcil.core.models.classifier import IncrementalLinear
from vidcil.core.models.heads import HEADS
from vidcil.core.models.heads._base import FrameEncoderHead
from vidcil.core.registry import PluginConfig


class LstmConfig(PluginConfig):
    kind: Literal["lstm"] = "lstm"
    hidden: int = Field(256, ge=1)
    layers: int = Field(1, ge=1)
    bidirectional: bool = True
    frame_dim: int | None = Field(None, ge=1)  # the encoder's input; default: the backbone's channels


@HEADS.register(LstmConfig)
class LstmHead(FrameEncoderHead):
    """``[N, T, C, H, W]`` -> frames ``[N, T, frame_dim]`` -> LSTM -> ``[N, hidden * directions]`` -> logits."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5, hidden: int = 256,
                 layers: int = 1, bidirectional: bool = True, frame_dim: int | None = None):
        super().__init__(in_features, frame_dim)
        self.encoder = nn.LSTM(self.frame_dim, hidden, layers, batch_first=True, bidirectional=bidirectional)
        self.dropout = nn.Dropout(dropout)
        self.classifier = IncrementalLinear(hidden * (2 if bidirectional else 1), num_classes)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.encoder(self.frames(features))  # h: [layers * directions, N, hidden]
        last = h[-2:] if self.encoder.bidirectional else h[-1:]  # the top layer, each direction
        return last.transpose(0, 1).flatten(1)
