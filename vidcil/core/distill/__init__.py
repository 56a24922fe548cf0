"""Distillers: one module per kind (``tsd``, ``pod``, ``lwf``), registered in :data:`DISTILLERS`.

A distiller is called as ``distiller(student_feats, teacher_feats, student_logits, teacher_logits)``
with stage features ``{stage: [N, T, C, H, W]}`` (and ``"encoder"``: the head's encoding ``[N, D]``)
and logits ``[N, K]``, and returns named loss terms, ``distil`` being the one added to the loss:
``loss = ce_weight * CE + lam * distil`` (:mod:`vidcil.core.training`); ``parts`` names the terms
``distil`` is made of and their shares (what a dynamic loss weighting weighs). ``uses_features``
says whether it needs features (else only logits are compared); ``mask [N]`` (optional) the clips
that have a target. What every distiller has (:class:`DistillerConfig`): ``lam``, ``ce_weight``,
``stages``, where in a stage the features are taken (``site``) and how a student with fewer
channels is matched to the teacher's without an adapter layer (``match``, ``combine``:
:mod:`vidcil.core.channel_matching`).

Add one: a module ``vidcil/core/distill/<kind>.py`` with a config subclassing
:class:`DistillerConfig` (``kind: Literal["<kind>"] = "<kind>"``) and a class decorated with
``@DISTILLERS.register(<Config>)`` taking that config; then ``distil: {kind: <kind>}`` in params.yaml.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Protocol

from pydantic import Field, field_validator

from vidcil.core.models import STAGES
from vidcil.core.registry import PluginConfig, Registry

DISTILLERS = Registry("distiller", __name__)


class DistillerConfig(PluginConfig):
    lam: float = Field(1.0, ge=0)  # weight of the distillation loss
    ce_weight: float = Field(1.0, ge=0)  # weight of the cross-entropy (task) loss
    stages: tuple[str, ...] = ("layer4",)  # backbone stages whose features are distilled
    # Where a stage's features are taken: its output, or the architecture's distillation site
    # (ResNet: before the last ReLU; MobileNet: after the last BN; ShuffleNet: after the shuffle).
    site: Literal["output", "architecture"] = "output"
    # A student with fewer channels than the teacher at a stage: pick teacher channels for it (no
    # adapter layer). none: the channels must agree; sparse: each student channel's nearest teacher
    # channel; hungarian: an r-to-1 assignment, then ``combine`` over each student channel's r.
    match: Literal["none", "sparse", "hungarian"] = "none"
    combine: Literal["random", "max"] = "max"

    shared: ClassVar[frozenset[str]] = frozenset({"kind", "lam", "ce_weight", "stages", "site", "match", "combine"})

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in v if s not in STAGES]
        if bad or not v:
            raise ValueError(f"stages {list(bad or v)} unknown; choose from {', '.join(STAGES)}")
        return v


class Distiller(Protocol):
    uses_features: bool
    parts: dict[str, float]

    def __call__(self, student: dict, teacher: dict, student_logits, teacher_logits, mask=None) -> dict: ...
