"""The classifier every head ends in, widened for new classes with the old rows kept.

- :class:`IncrementalLinear`: ``W x + b`` (the default, ``model.classifier: linear``);
- :class:`IncrementalCosine`: ``sigma * cos(W, x)`` with a learnt scale ``sigma`` (LUCIR, Hou et al.
  2019; ``model.classifier: cosine``): every class's row has norm 1, so the rows of classes learnt
  from many clips cannot outgrow those of classes kept by a few exemplars.

:func:`align_weights` is weight aligning (WA, Zhao et al. 2020: ``train.bias_correction: wa``): after a
batch with new classes, the new classes' rows are scaled so that their mean norm is the old ones'.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


class IncrementalLinear(nn.Module):
    """A linear classifier that can widen for new classes, keeping the old rows untouched."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    @property
    def in_features(self) -> int:
        return self.fc.in_features

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

    @torch.no_grad()
    def scale_rows(self, rows: slice, factor: float) -> None:
        """Multiply the logits of classes ``rows`` by ``factor`` (their weights and biases)."""
        self.fc.weight[rows] *= factor
        self.fc.bias[rows] *= factor

    def row_norms(self) -> torch.Tensor:
        return self.fc.weight.detach().norm(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class IncrementalCosine(nn.Module):
    """``sigma * <x / |x|, w_k / |w_k|>`` for each class ``k``; ``sigma`` is learnt (starts at 10, so
    that a fresh model's softmax is not flat), no bias. Widens like :class:`IncrementalLinear`."""

    def __init__(self, in_features: int, num_classes: int, sigma: float = 10.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.sigma = nn.Parameter(torch.tensor(float(sigma)))

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    def widen(self, num_classes: int) -> None:
        old = self.weight
        if num_classes < self.num_classes:
            raise ValueError(f"cannot shrink the classifier from {self.num_classes} to {num_classes}")
        if num_classes == self.num_classes:
            return
        new = torch.empty(num_classes, self.in_features, device=old.device, dtype=old.dtype)
        nn.init.kaiming_uniform_(new, a=math.sqrt(5))
        with torch.no_grad():
            new[: old.shape[0]] = old
        self.weight = nn.Parameter(new)

    @torch.no_grad()
    def scale_rows(self, rows: slice, factor: float) -> None:
        """Nothing to scale: every row has norm 1 in the logits (so weight aligning leaves it as it is)."""

    def row_norms(self) -> torch.Tensor:
        return torch.ones(self.num_classes, device=self.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigma * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


CLASSIFIERS = {"linear": IncrementalLinear, "cosine": IncrementalCosine}


def align_weights(classifier: nn.Module, old_classes: int) -> float:
    """Weight aligning: scale the rows of classes ``old_classes..`` so that their mean norm is the mean
    norm of rows ``..old_classes``; returns the factor (1.0 when there is nothing to align)."""
    norms = classifier.row_norms()
    if not 0 < old_classes < len(norms):
        return 1.0
    new = float(norms[old_classes:].mean())
    factor = float(norms[:old_classes].mean()) / new if new > 0 else 1.0
    classifier.scale_rows(slice(old_classes, None), factor)
    return factor
