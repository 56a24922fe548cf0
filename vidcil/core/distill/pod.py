"""PODNet-style distillation (Douillard et al., 2020) over C*T channels, as TCD applies it to video."""

from __future__ import annotations

from typing import Literal

from vidcil.core.distill import DISTILLERS, DistillerConfig
from vidcil.core.features import Features, check_stages, l2_distance, pod_spatial_feature


class PodConfig(DistillerConfig):
    kind: Literal["pod"] = "pod"
    normalize: bool = True


@DISTILLERS.register(PodConfig)
class PodSpatialDistillation:
    uses_features = True

    parts = {"pod_spatial": 1.0}

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    def __call__(self, student: Features, teacher: Features, student_logits=None, teacher_logits=None, mask=None):
        student = check_stages(student)
        pod = sum(l2_distance(pod_spatial_feature(s), pod_spatial_feature(teacher[stage].detach()), self.normalize, mask)
                  for stage, s in student.items()) / len(student)
        return {"pod_spatial": pod, "distil": pod}
