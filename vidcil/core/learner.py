"""The one learner: what happens to the model for one batch, as the pipeline and the benchmark run it.

- :func:`make_student`: the student (from scratch; the teacher's architecture and weights with
  the classifier widened for the new classes; or, ``params.student``, a smaller feature extractor,
  possibly with the teacher's temporal encoder copied and frozen);
- :func:`learn_batch`: train it on the batch (+ memory), distilling from the teacher with the
  configured distiller (``params.distil``; none: cross-entropy only), for as many epochs as a
  validation split carved from the batch (:func:`holdout`) says it needs (``train.convergence``);
- :func:`did_not_learn`: why a trained model is no better than chance (or None), so that it is
  never taken for one that learnt;
- :func:`exemplar_priority`: how the teacher ranks the videos it has learnt, for the memory
  (``params.memory.selection``);
- :func:`accuracy_by_group`: accuracy per batch of test videos, and overall.

A benchmark method is a configuration of these (``vidcil.experiments.methods``), so a benchmark
row is what the pipeline does with those params. Pure torch/numpy: datasets come in, models and
numbers go out; no file, MLflow or DVC here.
"""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vidcil.core import metrics
from vidcil.core.channel_matching import ChannelMatched
from vidcil.core.distill import DISTILLERS
from vidcil.core.memory.selection import SELECTIONS, Candidates
from vidcil.core.memory.ranking import true_class_confidence
from vidcil.core.loader import clip_loader
from vidcil.core.models.classifier import align_weights
from vidcil.core.models.tsm import VideoRecognizer
from vidcil.core.training import (Convergence, TrainResult, chance_floor, default_device, embed, predict_logits,
                                  predict_proba, train)
from vidcil.core.weighting import LOSS_WEIGHTINGS


def new_model(model, num_classes: int, *, mean, std, seed: int, num_segments: int | None = None) -> VideoRecognizer:
    """A model from scratch (``model``: the ``params.model`` section), its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return VideoRecognizer(model.arch, num_classes, num_segments or model.num_segments, model.shift_div,
                           model.dropout, model.init_weights, mean=mean, std=std, head=model.head,
                           input=model.input, classifier=model.classifier)


def widened_student(teacher: VideoRecognizer, num_classes: int) -> VideoRecognizer:
    """The teacher's architecture and weights, its classifier widened to ``num_classes``."""
    student = copy.deepcopy(teacher)
    student.widen(num_classes)
    return student


def make_student(teacher: VideoRecognizer | None, num_classes: int, *, model, mean, std, seed: int,
                 num_segments: int | None = None, student=None) -> VideoRecognizer:
    """The first batch's model from scratch, else the teacher widened — or, with ``student``
    (``params.student``) naming another ``arch``, that backbone, new, under the teacher's kind of
    head. ``student.reuse_encoder``: the teacher's temporal encoder and classifier are copied (the
    student's frames projected to the encoder's input size) and the encoder kept frozen; the
    student's feature extractor must then have between ``min_param_ratio`` and ``max_param_ratio``
    of the teacher's parameters."""
    if teacher is None:
        return new_model(model, num_classes, mean=mean, std=std, seed=seed, num_segments=num_segments)
    arch = student.arch if student is not None and student.arch else teacher.arch
    reuse = bool(student is not None and student.reuse_encoder)
    if arch == teacher.arch:
        torch.manual_seed(seed)  # the new classes' classifier rows: the same whatever ran before in this process
        made = widened_student(teacher, num_classes)
    else:
        head = teacher.head_config.model_dump()
        if "frame_dim" in head:  # reusing: the teacher's encoder input; else the student's own channels
            head["frame_dim"] = teacher.head.frame_dim if reuse else None
        torch.manual_seed(seed)
        made = VideoRecognizer(arch, teacher.num_classes, teacher.num_segments, model.shift_div, model.dropout,
                               student.init_weights, mean=mean, std=std, head=head, input=teacher.input,
                               classifier=teacher.classifier_kind)
        if reuse:
            if teacher.head.encoder is None:
                made.freeze_encoder()  # raises: nothing to reuse
            made.head.encoder.load_state_dict(teacher.head.encoder.state_dict())
            made.head.classifier.load_state_dict(teacher.head.classifier.state_dict())
        made.widen(num_classes)
    made.requires_grad_(True)  # a teacher may have been frozen; the student learns
    made.frozen_encoder = False
    if reuse:
        ratio = made.feature_extractor_parameters() / teacher.feature_extractor_parameters()
        if not student.min_param_ratio <= ratio <= student.max_param_ratio:
            raise ValueError(
                f"student {arch}: its feature extractor has {made.feature_extractor_parameters():,} parameters, "
                f"{ratio:.3f} x the teacher's ({teacher.arch}, {teacher.feature_extractor_parameters():,}); "
                f"student.reuse_encoder needs {student.min_param_ratio} to {student.max_param_ratio} x: "
                "choose another student.arch or change student.min_param_ratio / max_param_ratio")
        made.freeze_encoder()
    return made


def batch_epochs(teacher_arch: str | None, student_arch: str, train_options) -> int:
    """Epochs for one batch: ``epochs_first`` for a model whose backbone starts from scratch (the
    first batch: no teacher, or a student of another architecture than its teacher's), else ``epochs``."""
    fresh = teacher_arch is None or student_arch != teacher_arch
    return train_options.epochs_first if fresh else train_options.epochs


def holdout(refs: list, fraction: float, seed: int, *, min_per_class: int = 4) -> tuple[list, list]:
    """(train, validation) of a batch's training clips: per class, ``round(fraction * n)`` of its ``n``
    clips (at least one) go to validation when it has at least ``min_per_class``; fewer stay all in
    training. Which ones is fixed by ``seed`` and each clip's identity (batch and video), not by order."""
    if fraction <= 0:
        return list(refs), []
    by_class: dict[int, list] = {}
    for r in refs:
        by_class.setdefault(r.label, []).append(r)
    def key(r) -> str:
        return hashlib.sha256(f"{seed}/{r.batch_id}/{r.video or r.path}".encode()).hexdigest()

    held = set()
    for group in by_class.values():
        if len(group) >= min_per_class:
            held |= {id(r) for r in sorted(group, key=key)[: max(1, round(fraction * len(group)))]}
    return [r for r in refs if id(r) not in held], [r for r in refs if id(r) in held]


def did_not_learn(result: TrainResult, num_classes: int) -> str | None:
    """Why the model trained in ``result`` did not learn, or None. It did not when its last epoch's
    cross-entropy stays at chance level (≥ 0.95 ln K: no better than a uniform guess), or when its best
    validation accuracy is not above chance at the one-sided 95 % level (with at least 2 validation
    clips per class; fewer cannot tell)."""
    if num_classes < 2 or not result.history:
        return None
    chance, last = 1.0 / num_classes, result.history[-1]
    if last.get("ce", 0.0) >= 0.95 * math.log(num_classes):
        return (f"training loss {last['ce']:.3f} stayed at chance level (ln {num_classes} = "
                f"{math.log(num_classes):.3f}) after {result.epochs} epoch(s)")
    n = result.validation_clips
    if n >= 2 * num_classes and result.best_epoch:  # the best held-out accuracy of any epoch
        best = max(r["val_accuracy"] for r in result.history if "val_accuracy" in r)
        floor = chance_floor(num_classes, n)
        if best <= floor:
            return (f"validation accuracy {best:.3f} on {n} held-out clips is not above chance "
                    f"({chance:.3f} on {num_classes} classes; needs > {floor:.3f})")
    return None


def learn_batch(
    student: VideoRecognizer, data, *, teacher: VideoRecognizer | None, distil, train_options, seed: int,
    epochs: int | None = None, on_epoch: Callable | None = None, checkpoint: Path | None = None,
    fingerprint: str = "", validation=None, memory=None, **loader,
) -> TrainResult:
    """Learn one batch: train ``student`` in place on ``data`` (the batch's training clips + the memory's).

    ``teacher``: the champion (None for the first batch). ``epochs``: default :func:`batch_epochs`. ``distil``: ``params.distil``, a kind of :data:`~vidcil.core.distill.DISTILLERS`,
    or None for cross-entropy only. ``validation``: clips held out of the batch (:func:`holdout`);
    with ``train_options.convergence`` it stops on their plateau and keeps the best epoch (``epochs``
    is then the most). ``memory``: the replayed clips with evaluation transforms, scored with
    ``validation`` when ``convergence.score_memory`` (:class:`~vidcil.core.training.Convergence`). ``loader``: DataLoader, device and process-group switches of
    :func:`~vidcil.core.training.train`.
    """
    t = train_options
    config = DISTILLERS.config(distil) if teacher is not None and distil is not None else None
    epochs = epochs or batch_epochs(teacher.arch if teacher is not None else None, student.arch, t)
    distiller = DISTILLERS.build(config) if config else None
    if config is not None and config.match != "none":  # teacher channels picked for a narrower student
        distiller = ChannelMatched(distiller, config.match, config.combine, seed=seed)
    result = train(
        student, data, epochs=epochs, batch_size=t.batch_size, lr=t.lr, weight_decay=t.weight_decay, seed=seed,
        teacher=teacher if config is not None else None, distiller=distiller,
        lam=config.lam if config else 0.0, ce_weight=config.ce_weight if config else 1.0,
        logit_replay=t.logit_replay, class_balanced=t.class_balanced_ce,
        stages=tuple(config.stages) if config else (), site=config.site if config else "output",
        weighting=LOSS_WEIGHTINGS.build(t.loss_weighting) if config else None,
        on_epoch=on_epoch, checkpoint=checkpoint, fingerprint=fingerprint,
        convergence=Convergence(validation, t.convergence.patience, t.convergence.min_epochs,
                                memory=memory if t.convergence.score_memory else None)
        if validation is not None and len(validation) else None, **loader,
    )
    if teacher is not None:  # the classifier's bias towards the classes with many clips, corrected
        result.correction = correct_classifier(student, data, old_classes=teacher.num_classes, train_options=t,
                                               seed=seed, device=loader.get("device"),
                                               num_workers=loader.get("num_workers", 0))
    return result


@torch.no_grad()
def encodings(model: VideoRecognizer, data, *, batch_size: int = 16, device=None,
              num_workers: int = 0) -> torch.Tensor:
    """The head's encoding of each clip of ``data`` (what its classifier sees), ``[N, D]``, in eval mode."""
    device = device or default_device()
    was = model.training
    model.to(device).eval()
    out = [model.forward_features(x.to(device), ("encoder",))[1]["encoder"].float()
           for x, *_ in clip_loader(data, batch_size=batch_size, train=False, num_workers=num_workers)]
    model.train(was)
    return torch.cat(out)


def balanced_finetune(model: VideoRecognizer, data, *, steps: int, lr: float, seed: int, device=None,
                      num_workers: int = 0) -> None:
    """Train ``model``'s classifier alone for ``steps`` full-batch steps on its frozen encodings of
    ``data``'s labelled clips, each class weighing the same in the loss (weights 1 / its clips)."""
    device = device or default_device()
    x = encodings(model, data, device=device, num_workers=num_workers)
    y = torch.as_tensor(np.asarray(data.labels), device=x.device)
    keep = y >= 0
    x, y = x[keep], y[keep]
    counts = torch.bincount(y, minlength=model.num_classes).float()
    weight = torch.where(counts > 0, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))
    classifier = model.head.classifier
    torch.manual_seed(seed)
    opt = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=0.9)
    with torch.enable_grad():
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(classifier(x), y, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def correct_classifier(model: VideoRecognizer, data, *, old_classes: int, train_options, seed: int,
                       device=None, num_workers: int = 0) -> dict[str, float]:
    """After a batch learnt from a teacher of ``old_classes`` classes: ``train.balanced_finetune``, then
    ``train.bias_correction`` (wa: weight aligning, when the batch brought new classes). Returns what
    was done (``balanced_steps``, ``wa_factor``), for the step's output."""
    done: dict[str, float] = {}
    fine = train_options.balanced_finetune
    if fine.steps > 0:
        balanced_finetune(model, data, steps=fine.steps, lr=fine.lr, seed=seed, device=device,
                          num_workers=num_workers)
        done["balanced_steps"] = fine.steps
    if train_options.bias_correction == "wa" and model.num_classes > old_classes:
        done["wa_factor"] = align_weights(model.head.classifier, old_classes)
    model.eval()
    return done


def exemplar_priority(teacher: VideoRecognizer, data, selection, *, seed: tuple[int, ...] = (0,),
                      num_workers: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(confidence [N], priority [N], logits [N, K])`` of ``data``'s clips: the teacher's probability of
    each true class, the order the selection strategy (``params.memory.selection``) keeps them in, and
    the teacher's logits (what a memory with logit replay stores with each exemplar: DER++)."""
    logits = predict_logits(teacher, data, num_workers=num_workers)
    confidence = true_class_confidence(torch.softmax(torch.from_numpy(logits), dim=1).numpy(), data.labels)
    candidates = Candidates(data.labels, confidence, lambda: embed(teacher, data, num_workers=num_workers), seed)
    return confidence, SELECTIONS.build(selection)(candidates), logits


def accuracy_by_group(model: VideoRecognizer, data, groups: np.ndarray, names: list[str], *,
                      num_workers: int = 0) -> tuple[list[float], float, np.ndarray]:
    """Accuracy on each group of ``data``'s clips (``groups [N]``, e.g. batch ids) in ``names``,
    overall, and the predictions ``[N]``."""
    predicted = predict_proba(model, data, num_workers=num_workers).argmax(1)
    correct = predicted == data.labels
    overall = float(correct.mean()) if len(correct) else float("nan")
    return metrics.group_accuracy(correct, np.asarray(groups), names), overall, predicted
