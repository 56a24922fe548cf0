"""Learning without Forgetting (Li & Hoiem, 2016): KL between temperature-softened old-class logits."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from vidcil.core.distill import DISTILLERS, DistillerConfig
from vidcil.core.losses import masked_mean


class LwfConfig(DistillerConfig):
    kind: Literal["lwf"] = "lwf"
    temperature: float = Field(2.0, gt=0)


@DISTILLERS.register(LwfConfig)
class LogitDistillation:
    uses_features = False
    parts = {"logits": 1.0}

    def __init__(self, temperature: float = 2.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def __call__(self, student, teacher, student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask=None):
        """``student_logits [N, K_new]``, ``teacher_logits [N, K_old]``: the old classes' columns are compared."""
        t = self.temperature
        old = teacher_logits.shape[1]
        s, q = F.log_softmax(student_logits[:, :old].float() / t, dim=1), F.log_softmax(teacher_logits.detach().float() / t, dim=1)
        if mask is None:
            kd = F.kl_div(s, q, reduction="batchmean", log_target=True) * t * t
        else:
            kd = masked_mean(F.kl_div(s, q, reduction="none", log_target=True).sum(dim=1), mask) * t * t
        return {"logits": kd, "distil": kd}
