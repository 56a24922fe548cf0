"""NeXtVLAD (Lin, Xiao & Fan, 2018): frame features aggregated into cluster residuals, in groups.

Frames ``x [N, T, D]`` are expanded to ``λD`` and split into ``G`` groups of ``λD / G``; each group of
each frame is softly assigned to ``K`` clusters and weighted by a sigmoid group attention; the
residuals to ``K`` learnable centres are summed over frames and groups (so the order of the frames
does not matter and any number of them works), L2-normalised per cluster (intra-normalisation),
flattened, projected to ``hidden`` with batch norm, and gated by an SE context gate. Dropout before
the projection and before the classifier.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from vidcil.core.models.classifier import IncrementalLinear
from vidcil.core.models.heads import HEADS
from vidcil.core.models.heads._base import FrameEncoderHead
from vidcil.core.registry import PluginConfig


class NextVladConfig(PluginConfig):
    kind: Literal["nextvlad"] = "nextvlad"
    expansion: int = Field(2, ge=1)  # λ
    groups: int = Field(8, ge=1)  # G
    clusters: int = Field(32, ge=1)  # K
    hidden: int = Field(256, ge=1)
    gating_reduction: int = Field(8, ge=1)  # SE context gating bottleneck: hidden / r
    frame_dim: int | None = Field(None, ge=1)  # the encoder's input; default: the backbone's channels

    @model_validator(mode="after")
    def _hidden(self) -> "NextVladConfig":
        if self.hidden < self.gating_reduction:
            raise ValueError(f"hidden {self.hidden} < gating_reduction {self.gating_reduction}")
        return self


class NeXtVLAD(nn.Module):
    """``[N, T, D]`` -> ``[N, hidden]``."""

    def __init__(self, dim: int, expansion: int = 2, groups: int = 8, clusters: int = 32, hidden: int = 256,
                 gating_reduction: int = 8, dropout: float = 0.5):
        super().__init__()
        if expansion * dim % groups:
            raise ValueError(f"expansion x frame_dim ({expansion} x {dim}) must divide into {groups} groups")
        self.groups, self.clusters, self.group_dim = groups, clusters, expansion * dim // groups
        self.expand = nn.Linear(dim, expansion * dim)
        self.attention = nn.Linear(expansion * dim, groups)
        self.assign = nn.Linear(expansion * dim, groups * clusters, bias=False)
        self.assign_bn = nn.BatchNorm1d(groups * clusters)
        self.centres = nn.Parameter(torch.empty(clusters, self.group_dim).uniform_(-0.01, 0.01))
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(clusters * self.group_dim, hidden, bias=False)
        self.project_bn = nn.BatchNorm1d(hidden)
        self.gate = nn.Sequential(nn.Linear(hidden, hidden // gating_reduction, bias=False),
                                  nn.BatchNorm1d(hidden // gating_reduction), nn.ReLU(inplace=True),
                                  nn.Linear(hidden // gating_reduction, hidden), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        x = self.expand(x)  # [N, T, λD]
        attention = torch.sigmoid(self.attention(x))  # [N, T, G]
        logits = self.assign_bn(self.assign(x).flatten(0, 1)).view(n, t, self.groups, self.clusters)
        assignment = F.softmax(logits, dim=-1) * attention.unsqueeze(-1)  # [N, T, G, K]
        assignment = assignment.flatten(1, 2)  # [N, T*G, K]: every group of every frame is a descriptor
        descriptors = x.view(n, t * self.groups, self.group_dim)  # [N, T*G, λD/G]
        vlad = torch.einsum("nmk,nmj->nkj", assignment, descriptors) \
            - assignment.sum(dim=1).unsqueeze(-1) * self.centres  # [N, K, λD/G]: residuals to the centres
        vlad = F.normalize(vlad, dim=-1).flatten(1)  # intra-normalisation, then [N, K*λD/G]
        h = self.project_bn(self.project(self.dropout(vlad)))
        return h * self.gate(h)  # SE context gating


@HEADS.register(NextVladConfig)
class NextVladHead(FrameEncoderHead):
    """``[N, T, C, H, W]`` -> frames ``[N, T, frame_dim]`` -> NeXtVLAD ``[N, hidden]`` -> dropout -> logits."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5, expansion: int = 2,
                 groups: int = 8, clusters: int = 32, hidden: int = 256, gating_reduction: int = 8,
                 frame_dim: int | None = None):
        super().__init__(in_features, frame_dim)
        self.encoder = NeXtVLAD(self.frame_dim, expansion, groups, clusters, hidden, gating_reduction, dropout)
        self.dropout = nn.Dropout(dropout)
        self.classifier = IncrementalLinear(hidden, num_classes)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.frames(features))
