"""The classifier every head ends in: linear, widened for new classes with the old rows kept."""

from __future__ import annotations

import torch
from torch import nn


class IncrementalLinear(nn.Module):
    """A linear classifier that can widen for new classes, keeping the old rows untouched."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def widen(self, num_classes: int) -> None:
        old = self.fc
        if num_classes < old.out_features:
            raise ValueError(f"cannot shrink the classifier from {old.out_features} to {num_classes}")
        if num_classes == old.out_features:
            return
        new = nn.Linear(old.in_features, num_classes).to(old.weight.device)
        with torch.no_grad():
            new.weight[: old.out_features] = old.weight
            new.bias[: old.out_features] = old.bias
        self.fc = new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
