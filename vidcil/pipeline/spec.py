"""The pipeline, once, for every runner: each step's name, function, inputs, outputs and resources,
``land`` first and the promote/hold branch after the gates (the TFX ``create_pipeline()`` habit).

The Airflow DAG (dags/), the Kubeflow pipeline (pipelines/), the components (components/) and
the in-process runner (:mod:`vidcil.pipeline.runner`) all read :data:`PIPELINE`; none writes the
step list again. Importing this module is cheap (no torch, no MLflow): functions are named by
``module:function`` and imported only when a step runs.

Inputs and outputs name what a step reads and writes, for people and for runners that pass
artifacts: ``landing/<batch>`` (the landed batch), ``store/batches/<batch>``, ``store/memory/<batch>``,
``runs/<batch>/<step>.json`` (each step's small JSON output), ``registry`` (MLflow models and aliases).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Resources:
    """What a step needs where it runs in a pod (a worker slot in Airflow runs it locally)."""

    cpu: str = "1"
    memory: str = "4Gi"
    gpu: bool = False  # True: the step may run on a GPU node (params orchestration.kubernetes)
    timeout_minutes: int = 60


@dataclass(frozen=True)
class Step:
    name: str
    function: str  # "module:function", called as function(params, batch_id) -> dict
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    resources: Resources = field(default_factory=Resources)
    reads_registry: bool = False  # its result depends on the registry's state: never cache it

    def load(self) -> Callable:
        module, name = self.function.split(":")
        return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Branch:
    """After ``after``: ``if_true`` when its output's ``on`` is true, else ``if_false``."""

    after: str
    on: str
    if_true: Step
    if_false: Step

    def choose(self, output: dict) -> Step:
        return self.if_true if output[self.on] else self.if_false


@dataclass(frozen=True)
class Pipeline:
    steps: tuple[Step, ...]  # in order; each runs after the one before
    branch: Branch

    @property
    def all_steps(self) -> dict[str, Step]:
        return {s.name: s for s in (*self.steps, self.branch.if_true, self.branch.if_false)}

    def step(self, name: str) -> Step:
        if name not in self.all_steps:
            raise KeyError(f"unknown step {name!r}; steps: {', '.join(self.all_steps)}")
        return self.all_steps[name]


def _steps(name: str) -> str:
    return f"vidcil.pipeline.steps:{name}"


def create_pipeline() -> Pipeline:
    """The per-batch pipeline (ARCHITECTURE.md): land, validate, memory, distil, evaluate, register, gate."""
    out = "runs/<batch>/{}.json".format
    decide = dict(inputs=(out("register"), out("gates"), out("evaluate")), reads_registry=True)
    return Pipeline(
        steps=(
            Step("land", _steps("land"), ("landing zone (folder or s3://)",), ("landing/<batch>",)),
            Step("validate", _steps("validate"), ("landing/<batch>", "store/batches"),
                 ("store/batches/<batch>", "store/test_index.csv", out("validate")),
                 Resources(cpu="2", memory="8Gi")),
            Step("select_exemplars", _steps("select_exemplars"), ("registry", "store/batches", "store/memory"),
                 ("runs/<batch>/exemplars.csv", out("select_exemplars")), Resources(cpu="2", memory="8Gi"),
                 reads_registry=True),
            Step("extract_keyframes", _steps("extract_keyframes"),
                 ("runs/<batch>/exemplars.csv", "store/memory"), ("store/memory/<batch>", out("extract_keyframes"))),
            Step("distil", _steps("distil"), ("registry", "store/batches", "store/memory/<batch>"),
                 ("runs/<batch>/model", out("distil")),
                 Resources(cpu="4", memory="16Gi", gpu=True, timeout_minutes=360), reads_registry=True),
            Step("evaluate", _steps("evaluate"), ("runs/<batch>/model", "registry", "store/test_index.csv"),
                 (out("evaluate"),), Resources(cpu="2", memory="8Gi"), reads_registry=True),
            Step("register", _steps("register"), tuple(out(s) for s in (
                "validate", "extract_keyframes", "distil", "evaluate")) + ("runs/<batch>/model",),
                 ("registry", out("register")), reads_registry=True),
            Step("gates", _steps("gates"), (out("register"), out("evaluate")), (out("gates"),), reads_registry=True),
        ),
        branch=Branch("gates", "passed",
                      if_true=Step("promote", _steps("promote"), outputs=("registry", out("promote")), **decide),
                      if_false=Step("hold", _steps("hold"), outputs=("registry", out("hold")), **decide)),
    )


PIPELINE = create_pipeline()
