"""The continual-learning methods the benchmark compares, and the memory ablation.

A method is a configuration of the pipeline's learner (:mod:`vidcil.core.learner`): the
``distil`` and ``memory`` params it runs with (:meth:`Method.params`), so a benchmark row is what
``vidcil run-stream`` does with those params. ``tsd`` is the product's default: ``params.yaml`` as it
is. The published rivals (finetune, replay, LwF, PODNet, DER++, ...) run without the default's
classifier corrections (:data:`PLAIN`), so each row is the method it names and no more. Every method starts from the same batch-0 model
(trained once per seed, from scratch) and then learns each later batch from the previous model of
its own stream. Memory methods share one byte budget. ``joint`` (retrain on everything seen) is the
upper bound, not a pipeline configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vidcil.config import Params

TSD, POD, LWF = {"kind": "tsd"}, {"kind": "pod"}, {"kind": "lwf"}
# What a rival runs without: the default's extras after training (bias correction, class-balanced
# fine-tuning) and logit replay. A rival row adds back only what its name says.
PLAIN = {"bias_correction": "none", "balanced_finetune": {"steps": 0}, "logit_replay": 0.0, "class_balanced_ce": False}


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
    model: dict | None = None  # params.model options over the base's (another batch-0 model: arch, head)
    student: dict | None = None  # params.student options over the base's (how later students are made)
    train: dict | None = None  # params.train options over the base's (e.g. loss_weighting)

    def params(self, base: Params) -> Params:
        """``base`` with this method's distillation, memory, model, student and training options."""
        distil = None
        if self.distil is not None:
            given = base.distil.model_dump() if base.distil is not None else {}
            shared = {k: given[k] for k in ("lam", "stages") if k in given}
            distil = (given if given.get("kind") == self.distil["kind"] else shared) | self.distil
        memory = base.memory.model_dump() | {
            "replay": self.replay, "selection": self.selection,
            "budget_bytes": int(base.memory.budget_bytes * self.budget_factor)}
        if self.frames is not None:  # over the base's (a policy of another kind replaces it)
            memory = _merged(memory, {"frames": self.frames})
        dump = base.model_dump()
        sections = {k: _merged(dump[k], getattr(self, k)) for k in ("model", "student", "train") if getattr(self, k)}
        return Params.model_validate(dump | {"distil": distil, "memory": memory} | sections,
                                     context={"plugins": True})


def _merged(base: dict, options: dict) -> dict:
    """``base`` with ``options`` over it; a nested section (e.g. ``convergence``) merged key by key, but a
    plugin of another ``kind`` (a head, a loss weighting) replaces the base's whole: its options are its own."""
    def same_section(old, new) -> bool:
        return isinstance(old, dict) and isinstance(new, dict) and new.get("kind", old.get("kind")) == old.get("kind")
    return base | {k: _merged(base[k], v) if same_section(base.get(k), v) else v for k, v in options.items()}


METHODS: tuple[Method, ...] = (
    Method("finetune", "finetune (lower bound)", replay=False, train=PLAIN),
    Method("replay", "replay (CE only)", train=PLAIN),
    Method("lwf", "LwF + replay", distil=LWF, train=PLAIN),
    Method("podnet", "PODNet-style (C·T) + replay", distil=POD, train=PLAIN),
    Method("tsd", "the default (params.yaml): TSD + class-balanced fine-tuning, memory fit", distil=TSD),
    Method("tsd_align", "TSD + trajectory alignment", distil=TSD | {"align": True}),
    Method("joint", "joint retraining (upper bound)", replay=False, joint=True),
)

# Memory ablation: the default's training throughout (TSD, classifier fine-tuning); only the memory changes. The
# product's memory (confidence -> fit: keyframes, at most model.num_segments per video, that always fit the byte
# budget) is the ``tsd`` run above; ``mem_fit_f*`` trace the trade-off at the same budget (frames per video vs videos per class).
ABLATIONS: tuple[Method, ...] = (
    Method("mem_random", "random videos -> fit", distil=TSD, selection={"kind": "random"}),
    Method("mem_herding", "herding (iCaRL) -> fit", distil=TSD, selection={"kind": "herding"}),
    Method("mem_keyframes", "confident videos -> keyframes at a fixed threshold", distil=TSD,
           frames={"kind": "keyframes", "threshold": 0.06}),
    Method("mem_fit_f1", "confident videos -> fit, 1 frame per video", distil=TSD, frames={"kind": "fit", "frames": 1}),
    Method("mem_fit_f2", "confident videos -> fit, at most 2 frames per video", distil=TSD,
           frames={"kind": "fit", "frames": 2}),
    Method("mem_fit_f4", "confident videos -> fit, at most 4 frames per video", distil=TSD,
           frames={"kind": "fit", "frames": 4}),
    Method("mem_fit_t02", "confident videos -> fit, keyframe threshold floor 0.02", distil=TSD,
           frames={"kind": "fit", "threshold": 0.02}),
    Method("mem_uniform8", "confident videos -> 8 uniform frames", distil=TSD, frames={"kind": "uniform", "count": 8}),
    Method("mem_uniform8_x4", "confident videos -> 8 uniform frames, 4x budget", distil=TSD,
           frames={"kind": "uniform", "count": 8}, budget_factor=4.0),
    Method("mem_adaptive", "confident videos -> keyframes, threshold fitted per video", distil=TSD,
           frames={"kind": "adaptive"}),
)

# The further methods (``vidcil benchmark --methods ...``), each what the pipeline does with those params.
NEXTVLAD = {"head": {"kind": "nextvlad", "hidden": 256, "groups": 8, "clusters": 16}}
# Compression: a TSM-ResNet-50 teacher with a BiLSTM temporal encoder learns batch 0; every later
# batch is learnt by a MobileNetV3-large student (3.0 M backbone parameters vs 23.5 M).
R50 = {"arch": "resnet50", "head": {"kind": "lstm", "hidden": 256}}
MNV3 = {"arch": "mobilenet_v3_large"}
MATCHED = TSD | {"match": "hungarian", "combine": "max", "site": "architecture"}
RGB = {"input": "rgb"}  # the frames themselves, as before 2026-12-04 (the default now: their differences)
# The simple rivals practitioners use, on plain replay and with TSD: DER++ (the champion's logits stored
# with the memory, the student's logits on a memory clip pulled to them; alpha 0.2 as DER++'s authors'
# setting for sequential CIFAR-10 with a 500-image buffer; the memory clips' CE is the replay's),
# weight aligning of the classifier (WA), class-balanced fine-tuning of the classifier on the batch +
# memory (TCD, EEIL), a cosine classifier (LUCIR). Their settings are first choices, not tuned on
# either bundled stream.
DER = PLAIN | {"logit_replay": 0.2}
WA = PLAIN | {"bias_correction": "wa"}
BALANCED = PLAIN | {"balanced_finetune": {"steps": 50, "lr": 0.05}}
COSINE = {"classifier": "cosine"}
BALANCED_CE = PLAIN | {"class_balanced_ce": True}  # class-balanced cross-entropy (weights 1 / class count)
RIVALS: tuple[Method, ...] = (
    Method("der", "DER++ (replay + stored logits)", train=DER),
    Method("replay_wa", "replay + weight aligning (WA)", train=WA),
    Method("replay_balanced", "replay + class-balanced classifier fine-tuning", train=BALANCED),
    Method("replay_cosine", "replay, cosine classifier", model=COSINE, train=PLAIN),
    Method("tsd_der", "TSD + DER++ logit replay", distil=TSD, train=DER),
    Method("tsd_wa", "TSD + weight aligning (WA)", distil=TSD, train=WA),
    Method("tsd_balanced", "TSD + class-balanced classifier fine-tuning", distil=TSD, train=BALANCED),
    Method("tsd_cosine", "TSD, cosine classifier", distil=TSD, model=COSINE, train=PLAIN),
    Method("replay_bce", "replay, class-balanced CE", train=BALANCED_CE),
    Method("tsd_bce", "TSD, class-balanced CE", distil=TSD, train=BALANCED_CE),
    # The default's settings spelled out (the candidate default until 2026-12-07, the default since).
    Method("tsd_balanced_t02", "TSD + class-balanced fine-tuning, keyframe floor 0.02", distil=TSD, train=BALANCED,
           frames={"kind": "fit", "threshold": 0.02}),
    # The default before 2026-12-07: TSD alone (no classifier fine-tuning), keyframe threshold floor 0.06.
    Method("tsd_plain", "TSD alone, keyframe floor 0.06 (the default before 2026-12-07)", distil=TSD, train=PLAIN,
           frames={"kind": "fit", "threshold": 0.06}),
    # Replay with the memory as it was before 2026-12-07 (keyframe threshold floor 0.06).
    Method("replay_t06", "replay (CE only), keyframe floor 0.06", train=PLAIN, frames={"kind": "fit", "threshold": 0.06}),
    # The epoch kept chosen on the batch's held-out clips alone, as before 2026-12-07 (the memory not scored).
    Method("tsd_val_new", "the default, epoch chosen on the batch's held-out clips alone", distil=TSD,
           train={"convergence": {"score_memory": False}}),
)
EXTENSIONS: tuple[Method, ...] = RIVALS + (
    Method("tsd_rgb", "TSD + memory, frames as input (rgb)", distil=TSD, model=RGB),
    Method("replay_rgb", "replay (CE only), frames as input (rgb)", model=RGB, train=PLAIN),
    Method("tsd_dynamic", "TSD + dynamic loss weights", distil=TSD, train={"loss_weighting": {"kind": "dynamic"}}),
    Method("tsd_nextvlad", "TSD, NeXtVLAD head", distil=TSD, model=NEXTVLAD),
    Method("tsd_sparse_shufflenet", "TSD → ShuffleNetV2 student, sparse channel matching", model={"arch": "resnet18"},
           student={"arch": "shufflenet_v2_x1_0"}, distil=TSD | {"match": "sparse", "site": "architecture"}),
    Method("r50_tsd", "ResNet-50 + BiLSTM teacher, TSD (no compression)", distil=TSD, model=R50),
    Method("r50_to_mnv3_replay", "→ MobileNetV3 student, CE + replay only", model=R50, student=MNV3, train=PLAIN),
    Method("r50_to_mnv3_encoder", "→ MobileNetV3 student, frozen teacher encoder", model=R50,
           student=MNV3 | {"reuse_encoder": True}, distil={"kind": "encoder", "stages": ["encoder"]}),
    Method("r50_to_mnv3_matched", "→ MobileNetV3 student, TSD + Hungarian channel matching (max)", model=R50,
           student=MNV3, distil=MATCHED),
)
COMPRESSION = tuple(m.name for m in EXTENSIONS if m.name.startswith("r50_"))

# Runs whose accuracy is also measured after every epoch (optimizer steps to a target accuracy).
CURVES = ("tsd", "joint")
