"""Distillers: one module per kind (``tsd``, ``pod``, ``lwf``), registered in :data:`DISTILLERS`.

A distiller is called as ``distiller(student_feats, teacher_feats, student_logits, teacher_logits)``
with stage features ``{stage: [N, T, C, H, W]}`` and logits ``[N, K]``, and returns named loss
terms, ``distil`` being the one added to the loss: ``loss = CE + lam * distil``
(:mod:`vidcil.core.training`). ``uses_features`` says whether it needs stage features (else only
logits are compared). ``lam`` and ``stages`` are options every distiller has (:class:`DistillerConfig`).

Add one: a module ``vidcil/core/distill/<kind>.py`` with a config subclassing
:class:`DistillerConfig` (``kind: Literal["<kind>"] = "<kind>"``) and a class decorated with
``@DISTILLERS.register(<Config>)`` taking that config; then ``distil: {kind: <kind>}`` in params.yaml.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from pydantic import Field, field_validator

from vidcil.core.models import STAGES
from vidcil.core.registry import PluginConfig, Registry

DISTILLERS = Registry("distiller", __name__)


class DistillerConfig(PluginConfig):
    lam: float = Field(1.0, ge=0)  # weight of the distillation loss against CE
    stages: tuple[str, ...] = ("layer4",)  # backbone stages whose features are distilled

    shared: ClassVar[frozenset[str]] = frozenset({"kind", "lam", "stages"})  # the learner's, not the loss's

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in v if s not in STAGES]
        if bad or not v:
            raise ValueError(f"stages {list(bad or v)} unknown; choose from {', '.join(STAGES)}")
        return v


class Distiller(Protocol):
    uses_features: bool

    def __call__(self, student: dict, teacher: dict, student_logits, teacher_logits) -> dict: ...
