"""The continual-learning methods the benchmark compares, and the memory ablation.

A method is a configuration of the pipeline's learner (:mod:`vidcil.core.learner`): the
``distil`` and ``memory`` params it runs with (:meth:`Method.params`), so a benchmark row is what
``vidcil run-stream`` does with those params. Every method starts from the same batch-0 model
(trained once per seed, from scratch) and then learns each later batch from the previous model of
its own stream. Memory methods share one byte budget. ``joint`` (retrain on everything seen) is the
upper bound, not a pipeline configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vidcil.config import Params

TSD, POD, LWF = {"kind": "tsd"}, {"kind": "pod"}, {"kind": "lwf"}


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    distil: dict | None = None  # params.distil (merged over the base params' options of the same kind)
    replay: bool = True  # params.memory.replay: train on the batch + the exemplar memory
    selection: dict = field(default_factory=lambda: {"kind": "confidence"})  # params.memory.selection
    frames: dict | None = None  # params.memory.frames (None: the base params')
    budget_factor: float = 1.0  # memory budget = factor * memory.budget_bytes
    joint: bool = False  # retrain from scratch on every batch seen so far (no memory, no teacher)

    def params(self, base: Params) -> Params:
        """``base`` with this method's distillation and memory."""
        distil = None
        if self.distil is not None:
            given = base.distil.model_dump() if base.distil is not None else {}
            shared = {k: given[k] for k in ("lam", "stages") if k in given}
            distil = (given if given.get("kind") == self.distil["kind"] else shared) | self.distil
        memory = base.memory.model_dump() | {
            "replay": self.replay, "selection": self.selection,
            "budget_bytes": int(base.memory.budget_bytes * self.budget_factor)}
        if self.frames is not None:
            memory["frames"] = self.frames
        return Params.model_validate(base.model_dump() | {"distil": distil, "memory": memory},
                                     context={"plugins": True})


METHODS: tuple[Method, ...] = (
    Method("finetune", "finetune (lower bound)", replay=False),
    Method("replay", "replay (CE only)"),
    Method("lwf", "LwF + replay", distil=LWF),
    Method("podnet", "PODNet-style (C·T) + replay", distil=POD),
    Method("tsd", "TSD + dual-granularity memory (ours)", distil=TSD),
    Method("tsd_align", "TSD + trajectory alignment", distil=TSD | {"align": True}),
    Method("joint", "joint retraining (upper bound)", replay=False, joint=True),
)

# Memory ablation: TSD distillation throughout; only the memory changes. Dual granularity
# (confidence -> keyframes at a fixed threshold) is the ``tsd`` run above.
ABLATIONS: tuple[Method, ...] = (
    Method("mem_random", "random videos -> keyframes", distil=TSD, selection={"kind": "random"}),
    Method("mem_herding", "herding (iCaRL) -> keyframes", distil=TSD, selection={"kind": "herding"}),
    Method("mem_uniform8", "confident videos -> 8 uniform frames", distil=TSD, frames={"kind": "uniform", "count": 8}),
    Method("mem_uniform8_x4", "confident videos -> 8 uniform frames, 4x budget", distil=TSD,
           frames={"kind": "uniform", "count": 8}, budget_factor=4.0),
    Method("mem_adaptive", "confident videos -> keyframes, threshold fitted per video", distil=TSD,
           frames={"kind": "adaptive"}),
)

# Runs whose accuracy is also measured after every epoch (optimizer steps to a target accuracy).
CURVES = ("tsd", "joint")
