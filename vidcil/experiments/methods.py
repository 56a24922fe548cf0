"""The continual-learning methods the benchmark compares, and the memory ablation.

Every method starts from the same batch-0 model (trained once per seed, from scratch) and then
learns each later batch from the previous model of its own stream. Memory methods share one byte
budget; what differs is named in the fields below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    replay: bool = True  # train on the batch + the exemplar memory
    distil: Literal["tsd", "pod", "lwf"] | None = None  # from the previous model (the champion)
    align: bool = False  # tsd: trajectory-aligned spatial feature
    joint: bool = False  # retrain from scratch on every batch seen so far (no memory, no teacher)
    selection: Literal["confidence", "random", "herding"] = "confidence"  # which videos are kept
    frames: Literal["keyframes", "adaptive", "uniform8"] = "keyframes"  # which frames of them
    budget_factor: float = 1.0  # memory budget = factor * memory.budget_bytes


METHODS: tuple[Method, ...] = (
    Method("finetune", "finetune (lower bound)", replay=False),
    Method("replay", "replay (CE only)"),
    Method("lwf", "LwF + replay", distil="lwf"),
    Method("podnet", "PODNet-style (C·T) + replay", distil="pod"),
    Method("tsd", "TSD + dual-granularity memory (ours)", distil="tsd"),
    Method("tsd_align", "TSD + trajectory alignment", distil="tsd", align=True),
    Method("joint", "joint retraining (upper bound)", replay=False, joint=True),
)

# Memory ablation: TSD distillation throughout; only the memory changes. Dual granularity
# (confidence -> keyframes at a fixed threshold) is the ``tsd`` run above.
ABLATIONS: tuple[Method, ...] = (
    Method("mem_random", "random videos -> keyframes", distil="tsd", selection="random"),
    Method("mem_herding", "herding (iCaRL) -> keyframes", distil="tsd", selection="herding"),
    Method("mem_uniform8", "confident videos -> 8 uniform frames", distil="tsd", frames="uniform8"),
    Method("mem_uniform8_x4", "confident videos -> 8 uniform frames, 4x budget", distil="tsd",
           frames="uniform8", budget_factor=4.0),
    Method("mem_adaptive", "confident videos -> keyframes, threshold fitted per video", distil="tsd",
           frames="adaptive"),
)

# Runs whose accuracy is also measured after every epoch (optimizer steps to a target accuracy).
CURVES = ("tsd", "joint")
