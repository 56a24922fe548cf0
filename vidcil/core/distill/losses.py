"""Knowledge-distillation losses, behind a small registry (``DISTILLERS``).

Time-space decomposed distillation (TSD): from backbone features ``X [N, T, C, H, W]``

- temporal feature = concat(pool_W(X), pool_H(X)) -> ``[N, T, C, H + W]`` (keeps T),
- spatial feature  = pool_T(X)                     -> ``[N, C, H, W]``,

and the loss is ``alpha * L_temporal + (1 - alpha) * L_spatial``, each the L2 distance between
teacher and student features, averaged over the clips of the batch and the distilled stages.
With ``align`` the spatial feature is pooled after aligning the frames along the object's
trajectory (:mod:`vidcil.core.distill.alignment`), with the teacher's shifts applied to both.

The baselines the benchmark compares against live here too: ``pod`` (PODNet's pooled spatial
distillation with time folded into the channels, as TCD does) and ``lwf`` (Learning without
Forgetting: temperature-scaled logits). The training loss is ``CE + lambda * L_distil`` (see
:mod:`vidcil.core.training`); every distiller returns named terms, ``distil`` being their sum.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F

from vidcil.core.distill.alignment import align_trajectory, trajectory_shifts

Pooling = Literal["mean", "max"]


def _pool(x: torch.Tensor, dim: int, pooling: Pooling) -> torch.Tensor:
    return x.mean(dim=dim) if pooling == "mean" else x.amax(dim=dim)


def temporal_feature(x: torch.Tensor, pooling: Pooling = "mean") -> torch.Tensor:
    """``[N, T, C, H, W]`` -> ``[N, T, C, H + W]``: pooled over W (keeps H) and over H (keeps W)."""
    return torch.cat([_pool(x, -1, pooling), _pool(x, -2, pooling)], dim=-1)


def spatial_feature(x: torch.Tensor, pooling: Pooling = "mean", shifts: torch.Tensor | None = None) -> torch.Tensor:
    """``[N, T, C, H, W]`` -> ``[N, C, H, W]``: pooled over time.

    ``shifts [N, T, 2]``: first align the frames along the object's trajectory by these shifts.
    """
    if shifts is not None:
        x = align_trajectory(x, shifts)
    return _pool(x, 1, pooling)


def l2_distance(student: torch.Tensor, teacher: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Mean over the batch of ``||s - t||_2`` on each clip's flattened feature.

    With ``normalize`` both features are first scaled to unit L2 norm per clip (as PODNet does), so
    the loss does not depend on the feature scale of the stage or the architecture.
    """
    s, t = student.flatten(1), teacher.flatten(1)
    if s.shape != t.shape:
        raise ValueError(
            f"student feature {tuple(student.shape)} and teacher feature {tuple(teacher.shape)} "
            "differ; distil from a stage where both have the same channels and size"
        )
    if normalize:
        s, t = F.normalize(s, dim=1), F.normalize(t, dim=1)
    return (s - t).norm(dim=1).mean()


Features = dict[str, torch.Tensor]  # {stage: [N, T, C, H, W]}


def _check_stages(student: Features) -> None:
    if not student:
        raise ValueError("no stage features to distil; configure distil.stages")


class TimeSpaceDistillation:
    """TSD loss between dicts of stage features (``{stage: [N, T, C, H, W]}``)."""

    uses_features = True

    def __init__(self, alpha: float = 0.5, pooling: Pooling = "mean", normalize: bool = True, align: bool = False):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha, self.pooling, self.normalize, self.align = alpha, pooling, normalize, align

    def __call__(self, student: Features, teacher: Features, student_logits=None, teacher_logits=None
                 ) -> dict[str, torch.Tensor]:
        """Returns the named terms ``temporal``, ``spatial`` and their weighted sum ``distil``."""
        _check_stages(student)
        temporal = spatial = 0.0
        for stage, s in student.items():
            t = teacher[stage].detach()
            shifts = trajectory_shifts(t) if self.align else None
            temporal = temporal + l2_distance(
                temporal_feature(s, self.pooling), temporal_feature(t, self.pooling), self.normalize
            )
            spatial = spatial + l2_distance(
                spatial_feature(s, self.pooling, shifts), spatial_feature(t, self.pooling, shifts), self.normalize
            )
        temporal, spatial = temporal / len(student), spatial / len(student)
        distil = self.alpha * temporal + (1 - self.alpha) * spatial
        return {"temporal": temporal, "spatial": spatial, "distil": distil}


def pod_spatial_feature(x: torch.Tensor) -> torch.Tensor:
    """PODNet's pooled spatial feature with time folded into channels: ``[N, T, C, H, W]`` -> ``[N, T*C*(H+W)]``.

    Squared activations summed over W (keeps H) and over H (keeps W), as in PODNet's POD-spatial.
    """
    a = x.flatten(1, 2).pow(2)  # [N, T*C, H, W]
    return torch.cat([a.sum(dim=-1).flatten(1), a.sum(dim=-2).flatten(1)], dim=1)


class PodSpatialDistillation:
    """PODNet-style distillation (Douillard et al., 2020) over C*T channels, as TCD applies it to video."""

    uses_features = True

    def __init__(self, normalize: bool = True):
        self.normalize = normalize

    def __call__(self, student: Features, teacher: Features, student_logits=None, teacher_logits=None
                 ) -> dict[str, torch.Tensor]:
        _check_stages(student)
        pod = sum(l2_distance(pod_spatial_feature(s), pod_spatial_feature(teacher[stage].detach()), self.normalize)
                  for stage, s in student.items()) / len(student)
        return {"pod_spatial": pod, "distil": pod}


class LogitDistillation:
    """Learning without Forgetting (Li & Hoiem, 2016): KL between temperature-softened old-class logits."""

    uses_features = False

    def __init__(self, temperature: float = 2.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def __call__(self, student: Features, teacher: Features, student_logits: torch.Tensor,
                 teacher_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """``student_logits [N, K_new]``, ``teacher_logits [N, K_old]``: the old classes' columns are compared."""
        t = self.temperature
        old = teacher_logits.shape[1]
        kd = F.kl_div(F.log_softmax(student_logits[:, :old].float() / t, dim=1),
                      F.log_softmax(teacher_logits.detach().float() / t, dim=1),
                      reduction="batchmean", log_target=True) * t * t
        return {"logits": kd, "distil": kd}


DISTILLERS: dict[str, Callable[[dict], object]] = {  # method -> factory from the distil options
    "tsd": lambda o: TimeSpaceDistillation(o["alpha"], o["pooling"], o["normalize"], o["align"]),
    "pod": lambda o: PodSpatialDistillation(o["normalize"]),
    "lwf": lambda o: LogitDistillation(o["temperature"]),
}


def make_distiller(method: str, *, alpha: float = 0.5, pooling: Pooling = "mean", normalize: bool = True,
                   align: bool = False, temperature: float = 2.0):
    """The distiller registered as ``method``; each takes the options that mean something to it."""
    if method not in DISTILLERS:
        raise ValueError(f"unknown distillation method {method!r}; choose one of {', '.join(DISTILLERS)}")
    return DISTILLERS[method](dict(alpha=alpha, pooling=pooling, normalize=normalize, align=align,
                                   temperature=temperature))
