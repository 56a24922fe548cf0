"""Loss masks: a sample that has no target for a loss term contributes nothing to it.

A term is the mean of its per-sample values over the samples that have a target (``mask``); with
none it is 0 (and still part of the graph), not NaN. Cross-entropy's mask is the labelled clips
(label ``-1``: no label), a distiller's the clips the teacher has targets for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NO_LABEL = -1


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``values [N]`` over ``mask [N]`` (bool; None: every sample); 0 when the mask is empty."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                         class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the labelled clips (``labels >= 0``) of ``logits [N, K]``; with
    ``class_weights [K]`` each clip weighs its class's weight (the weighted mean over the clips)."""
    labelled = labels >= 0
    if bool(labelled.all()):  # every clip labelled: the plain loss, bit for bit
        return F.cross_entropy(logits, labels, weight=class_weights)
    per_sample = F.cross_entropy(logits, labels.clamp(min=0), reduction="none")
    if class_weights is None:
        return masked_mean(per_sample, labelled)
    w = class_weights[labels.clamp(min=0)] * labelled
    return (per_sample * w).sum() / w.sum().clamp(min=torch.finfo(per_sample.dtype).tiny)


def balanced_class_weights(labels, num_classes: int) -> torch.Tensor:
    """``[num_classes]`` weights that make every class present in ``labels`` (ints, -1: unlabelled) weigh
    the same in a weighted mean: ``n / (classes present * n_c)``; 1 for a class with no clip."""
    y = torch.as_tensor(labels, dtype=torch.long)
    counts = torch.bincount(y[y >= 0], minlength=num_classes).float()
    present = counts > 0
    w = torch.ones(num_classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w


def stored_logit_mse(logits: torch.Tensor, stored: torch.Tensor) -> torch.Tensor:
    """DER++'s logit replay: the squared distance between ``logits [N, K]`` and the logits stored with
    each clip when it went into the memory, ``stored [N, K']`` (``K' <= K``: the classes known then;
    NaN where a clip has none, e.g. a clip of the new batch, or a class added later). Per clip the mean
    over its stored logits, then the mean over the clips that have any (0 when none)."""
    have = ~torch.isnan(stored)
    width = stored.shape[1]
    diff = torch.where(have, logits[:, :width].float() - torch.nan_to_num(stored.float()), 0.0)
    per_clip = diff.pow(2).sum(1) / have.sum(1).clamp(min=1)
    return masked_mean(per_clip, have.any(1))
