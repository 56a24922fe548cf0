"""Training a student: cross-entropy, plus ``lambda * L_distil`` from a frozen teacher.

``loss = ce_weight * CE(student(x), y) + lam * distiller(student_features, teacher_features)``, plus
``logit_replay * MSE(student logits, stored logits)`` on memory clips that carry the logits stored
with them (DER++); a loss weighting (:mod:`vidcil.core.weighting`) may reweigh CE and each of the
other terms epoch by epoch. Unlabelled clips (label -1) count in no cross-entropy (:mod:`vidcil.core.losses`).
The teacher is
in eval mode with gradients off; only the student's parameters get gradients. Runs on CUDA when
there is a GPU (bf16 autocast, channels_last) and on the CPU otherwise; a checkpoint after every
epoch lets a killed run resume where it stopped.

Under ``torchrun`` (:mod:`vidcil.core.distributed`) the student trains data-parallel (DDP): each
process takes its slice of every batch, gradients are averaged, the epoch's figures summed over
all processes; rank 0 alone writes the checkpoint and reports epochs. ``batch_size`` is the global
batch, so the optimizer takes the same steps as in one process. On GPUs batch norm is synchronised
(``SyncBatchNorm``), so training matches one process's up to summation order; PyTorch has no CPU
SyncBatchNorm, so on the CPU (gloo) each process normalises over its own slice of the batch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from vidcil.core import distributed
from vidcil.core.loader import clip_loader
from vidcil.core.distill import Distiller
from vidcil.core.losses import balanced_class_weights, masked_cross_entropy, stored_logit_mse
from vidcil.core.weighting import LossWeighting
from vidcil.core.models.tsm import VideoRecognizer


@dataclass
class TrainResult:
    steps: int = 0  # optimizer steps, including those of epochs done before a resume
    epochs: int = 0  # epochs done in all
    resumed_from_epoch: int = 0  # epochs that came from a checkpoint (0: started fresh)
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    best_epoch: int | None = None  # 1-based epoch whose weights the student keeps (with a validation set)
    stopped_early: bool = False  # the validation accuracy plateaued before the last allowed epoch
    validation_clips: int = 0
    correction: dict[str, float] = field(default_factory=dict)  # what was done to the classifier after training


@dataclass(frozen=True)
class Convergence:
    """Stop on a plateau of ``validation`` accuracy: after ``min_epochs``, when ``patience`` epochs in a row
    did not beat the best one (higher accuracy, or the same with a lower loss); the best epoch's
    weights are kept. ``epochs`` (of :func:`train`) is the most it may take.

    A plateau at chance is not convergence: a network from scratch often sits at chance for several
    epochs before it takes off (measured on the bundled stream: stopped after 4 of 12 epochs at 0.25 on
    4 classes). Epochs count towards ``patience`` only once the best validation accuracy is above
    chance (:func:`above_chance`); a model that never gets there trains every epoch allowed.

    ``memory``: the replayed clips (trained on too), scored with ``validation`` so the classes only the
    memory holds count in the choice of epoch: the score is then the mean of the per-class accuracies
    over both sets. Without them a batch of new classes chose its epoch on the new classes alone and
    could keep an early epoch that had not yet re-fitted the old ones (the demo's ``b001`` on
    2026-12-07: epoch 2 of 5 kept, train accuracy 0.67, then held for losing 0.27 on the old classes)."""

    validation: Dataset
    patience: int = 3
    min_epochs: int = 2
    memory: Dataset | None = None


def chance_floor(num_classes: int, clips: int) -> float:
    """The accuracy above which ``clips`` validation clips show learning over ``num_classes`` classes at the
    one-sided 95 % level (normal approximation of the binomial around chance, 1 / classes)."""
    chance = 1.0 / max(num_classes, 1)
    return chance + 1.645 * math.sqrt(chance * (1 - chance) / max(clips, 1))


@torch.no_grad()
def _scored(model: VideoRecognizer, data: Dataset, *, device: torch.device, batch_size: int,
            num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(labels, whether each clip was right, summed cross-entropy) of ``model`` on ``data`` in eval mode."""
    was = model.training
    model.eval()
    labels, right, loss = [], [], 0.0
    for x, y, *_ in clip_loader(data, batch_size=batch_size, train=False, num_workers=num_workers):
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
        labels.append(y.cpu())
        right.append((logits.argmax(1) == y).cpu())
    model.train(was)
    if not labels:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.bool), 0.0
    return torch.cat(labels), torch.cat(right), loss


def convergence_scores(model: VideoRecognizer, convergence: Convergence, *, device: torch.device, batch_size: int,
                       num_workers: int = 0) -> tuple[tuple[float, float], dict[str, float]]:
    """The score the plateau rule compares (accuracy, loss) and the epoch row's validation columns.

    ``val_accuracy`` / ``val_loss`` are always the held-out clips' own (what :func:`did_not_learn`
    reads). With ``convergence.memory`` the row adds ``val_memory_accuracy`` and ``val_score``, the
    mean per-class accuracy over held-out + memory clips, which is what the rule then compares (with
    the mean loss over both)."""
    def accuracy(right: torch.Tensor) -> float:
        return float(right.float().mean()) if len(right) else 0.0

    kw = {"device": device, "batch_size": batch_size, "num_workers": num_workers}
    labels, right, loss = _scored(model, convergence.validation, **kw)
    row = {"val_accuracy": accuracy(right), "val_loss": loss / max(len(labels), 1)}
    if convergence.memory is None or len(convergence.memory) == 0:
        return (row["val_accuracy"], row["val_loss"]), row
    m_labels, m_right, m_loss = _scored(model, convergence.memory, **kw)
    labels, right = torch.cat([labels, m_labels]), torch.cat([right, m_right])
    per_class = [accuracy(right[labels == c]) for c in labels.unique()]
    row |= {"val_memory_accuracy": accuracy(m_right),
            "val_score": sum(per_class) / len(per_class)}
    return (row["val_score"], (loss + m_loss) / max(len(labels), 1)), row


def plateau_step(score: tuple[float, float], best: tuple[float, float] | None, stale: int,
                 floor: float, *, started: bool | None = None) -> tuple[bool, int]:
    """One epoch of the plateau rule: (whether ``score`` (accuracy, loss) beats ``best`` — higher accuracy,
    or the same with a lower loss —, epochs without a better one). Epochs are not counted while the best
    accuracy is at or under ``floor`` (chance): learning has not started, so there is nothing to converge.
    ``started``: whether learning started, when another figure than ``score`` tells (the held-out clips'
    accuracy, when the score includes the memory's trained-on clips)."""
    if best is None or score[0] > best[0] or (score[0] == best[0] and score[1] < best[1]):
        return True, 0
    started = best[0] > floor if started is None else started
    return False, stale + 1 if started else stale


def default_device() -> torch.device:
    """A GPU when there is one (this process's own under torchrun), else the CPU."""
    return distributed.device()


class _Features(torch.nn.Module):
    """``model.forward_features`` as a module's forward, which DDP wraps."""

    def __init__(self, model: VideoRecognizer):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, stages: tuple[str, ...], site: str = "output"):
        return self.model.forward_features(x, stages, site)


def _sync_batchnorm(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.nn.Module]]:
    """Swap every batch-norm layer of ``model`` for a ``SyncBatchNorm`` sharing its parameters and
    buffers (what is learnt lands in the original layers); returns what :func:`_restore_batchnorm` undoes."""
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(child, torch.nn.SyncBatchNorm):
                synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(child)  # same tensors, not copies
                synced.train(child.training)
                setattr(parent, name, synced)
                swapped.append((parent, name, child))
    return swapped


def _restore_batchnorm(swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]]) -> None:
    for parent, name, original in swapped:
        original.train(getattr(parent, name).training)
        setattr(parent, name, original)


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def autocast_dtype(device: torch.device, mixed_precision: bool) -> torch.dtype | None:
    """bf16 on a GPU that has it (no loss scaling needed), fp16 on older GPUs, none on the CPU."""
    if device.type != "cuda" or not mixed_precision:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _save(state: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill while saving leaves the previous checkpoint intact


def load_training_checkpoint(path: Path | None, fingerprint: str) -> dict | None:
    """The checkpoint at ``path`` if it was written for ``fingerprint``, else None."""
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a torn or foreign file: start over rather than trust it
        return None
    return state if state.get("fingerprint") == fingerprint else None


def train(
    student: VideoRecognizer,
    data: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    teacher: VideoRecognizer | None = None,
    distiller: Distiller | None = None,
    lam: float = 1.0,
    ce_weight: float = 1.0,
    logit_replay: float = 0.0,
    class_balanced: bool = False,
    stages: tuple[str, ...] = (),
    site: str = "output",
    weighting: LossWeighting | None = None,
    device: torch.device | None = None,
    on_epoch=None,
    num_workers: int = 0,
    pin_memory: bool = False,
    mixed_precision: bool = True,
    channels_last: bool = True,
    compile: bool = False,
    sync_batchnorm: bool = True,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    group: distributed.ProcessGroup | None = None,
    convergence: Convergence | None = None,
) -> TrainResult:
    """Train ``student`` in place on ``data``; distil from ``teacher`` when one is given.

    ``on_epoch(epoch, row)`` is called after each epoch (progress display, metric logging);
    ``row`` holds the epoch's mean loss terms, ``train_accuracy`` and ``steps`` so far.
    ``checkpoint``: after every epoch the model, optimizer, scheduler, loss scaler and RNG states go
    there; a later call with the same ``fingerprint`` (what was trained on, and how) resumes after
    the last finished epoch — and returns at once when all were done. Mixed precision and
    ``channels_last`` apply on CUDA only; the CPU path is plain float32. ``group``: the DDP process
    group (default: the one this process joined, if any); ``on_epoch`` and the checkpoint are rank 0's;
    ``sync_batchnorm``: on GPUs, batch-norm statistics over the global batch (``SyncBatchNorm``).
    ``site``: where the stages' features are taken (``VideoRecognizer.forward_features``);
    ``weighting``: multipliers of CE and of the distiller's ``parts`` for each epoch, from the
    epochs before (None: fixed); the epoch's row has them as ``weight_<term>``.
    ``logit_replay``: the weight of DER++'s term (:func:`~vidcil.core.losses.stored_logit_mse`) on the
    clips whose dataset item carries stored logits; 0: off.
    ``class_balanced``: each clip's CE weighs ``n / (classes * n_its_class)`` over ``data``'s labels, so a
    class with few clips (the memory's old classes) counts as much as one with many (the batch's new ones).
    ``convergence``: a validation set and a plateau rule; ``epochs`` is then the most it trains, each
    row has ``val_accuracy`` / ``val_loss`` (and, with the memory scored too, ``val_memory_accuracy`` /
    ``val_score``: :func:`convergence_scores`), and the student ends with its best epoch's weights (the
    steps spent count all epochs). Every process evaluates the whole validation set, so all stop together.
    """
    device = device or default_device()
    group = group or distributed.current()
    torch.manual_seed(seed)
    loader = clip_loader(data, batch_size=batch_size, train=True, seed=seed, num_workers=num_workers,
                         pin_memory=pin_memory and device.type == "cuda", rank=group.rank, world=group.world)
    if len(loader) == 0:
        raise ValueError("no clip to train on: the training set is empty")
    student.to(device).train()
    if teacher is not None:
        if distiller is None:
            raise ValueError("a teacher needs a distiller")
        if distiller.uses_features and not stages:
            raise ValueError(f"{type(distiller).__name__} distils features: name at least one stage")
        freeze(teacher).to(device)
    if channels_last and device.type == "cuda":
        for model in (student, teacher):
            if model is not None:
                model.use_channels_last()
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    total = max(1, epochs * len(loader))
    warmup = max(1, len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / total))
    )
    dtype = autocast_dtype(device, mixed_precision)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    feature_stages = stages if teacher is not None else ()

    result = TrainResult(validation_clips=len(convergence.validation) if convergence else 0)
    best_score, best_state, stale = None, None, 0
    state = load_training_checkpoint(checkpoint, fingerprint)
    if state is not None:
        student.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        result.steps, result.epochs = int(state["steps"]), int(state["epoch"])
        result.resumed_from_epoch, result.history = result.epochs, list(state["history"])
        if state.get("distiller") and hasattr(distiller, "load_state_dict"):
            distiller.load_state_dict(state["distiller"])  # e.g. the channel matching it started with
        if state.get("best_model"):
            best_state, stale = state["best_model"], int(state["stale"])
            best_score, result.best_epoch = tuple(state["best_score"]), int(state["best_epoch"])
        result.stopped_early = bool(state.get("stopped_early", False))
    # Batch norm over the global batch, as one process would (PyTorch has SyncBatchNorm on GPUs only;
    # on the CPU each process normalises over its own slice of the batch).
    synced = _sync_batchnorm(student) if group.distributed and sync_batchnorm and device.type == "cuda" else []
    net: torch.nn.Module = _Features(student)
    if group.distributed:  # after the resume: DDP starts every process from rank 0's weights
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(net) if compile else net
    # The tasks a weighting weighs, and their configured weights.
    parts = getattr(distiller, "parts", {"distil": 1.0}) if teacher is not None else {}
    base = {"ce": ce_weight} | {k: lam * share for k, share in parts.items()}
    replaying = logit_replay > 0 and bool(getattr(data, "logit_width", 0))
    class_weights = balanced_class_weights(data.labels, student.num_classes).to(device) if class_balanced else None
    if replaying:
        base["logit_replay"] = logit_replay
    try:
        for epoch in range(result.epochs, epochs):
            if result.stopped_early:  # resumed after the plateau was found
                break
            loader.sampler.set_epoch(epoch)
            student.train()
            w = weighting(result.history, list(base)) if weighting is not None else {k: 1.0 for k in base}
            fixed = all(v == 1.0 for v in w.values())
            sums: dict[str, float] = {}
            correct = seen = clips = 0
            for x, y, *stored in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    logits, s_feats = forward(x, feature_stages, site)
                    terms = {"ce": masked_cross_entropy(logits, y, class_weights)}
                    if replaying:
                        terms["logit_replay"] = stored_logit_mse(logits, stored[0].to(device, non_blocking=True))
                    if teacher is not None:
                        with torch.no_grad():
                            t_logits, t_feats = teacher.forward_features(x, stages, site)
                        terms.update(distiller(s_feats, t_feats, logits, t_logits))
                    if fixed:
                        terms["loss"] = ce_weight * terms["ce"] + (lam * terms["distil"] if teacher is not None else 0)
                        if replaying:
                            terms["loss"] = terms["loss"] + logit_replay * terms["logit_replay"]
                    else:
                        terms["loss"] = sum(base[k] * w[k] * terms[k] for k in base)
                opt.zero_grad(set_to_none=True)
                scaler.scale(terms["loss"]).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                result.steps += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v.item() * len(y)
                labelled = y >= 0
                clips += len(y)
                correct += int(((logits.argmax(1) == y) & labelled).sum())
                seen += int(labelled.sum())
            keys = sorted(sums)  # the same terms in every process
            *totals, correct, seen, clips = distributed.all_sum(
                [sums[k] for k in keys] + [correct, seen, clips], group, device)
            row = ({k: v / max(clips, 1) for k, v in zip(keys, totals)}
                   | {"train_accuracy": correct / max(seen, 1), "steps": result.steps}
                   | ({f"weight_{k}": v for k, v in w.items()} if weighting is not None else {}))
            result.epochs += 1
            if convergence is not None:
                score, columns = convergence_scores(student, convergence, device=device, batch_size=batch_size,
                                                    num_workers=num_workers)
                # Every process scores the same clips with the same weights; rank 0's figures decide for all,
                # so a last-digit difference between GPUs cannot make two processes keep different epochs.
                row |= {k: float(v) for k, v in zip(columns, distributed.broadcast_from_main(
                    torch.tensor(list(columns.values()), dtype=torch.float64), device).tolist())}
                score = tuple(distributed.broadcast_from_main(torch.tensor(score, dtype=torch.float64), device).tolist())
                # Learning has started once the held-out clips beat chance: the memory's clips are trained on,
                # so the score with them clears chance from the first epoch whatever the new classes do.
                floor = chance_floor(student.num_classes, result.validation_clips)
                held_out_best = max(r["val_accuracy"] for r in result.history + [row] if "val_accuracy" in r)
                improved, stale = plateau_step(score, best_score, stale, floor, started=held_out_best > floor)
                if improved:
                    best_score, result.best_epoch = score, result.epochs
                    best_state = {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}
                result.stopped_early = (result.epochs >= convergence.min_epochs and stale >= convergence.patience
                                        and result.epochs < epochs)
            result.history.append(row)
            if checkpoint is not None and group.is_main:
                _save({"fingerprint": fingerprint, "epoch": result.epochs, "steps": result.steps,
                       "history": result.history, "model": student.state_dict(), "optimizer": opt.state_dict(),
                       "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                       "torch_rng": torch.get_rng_state(),
                       "distiller": distiller.state_dict() if hasattr(distiller, "state_dict") else {},
                       "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
                       "best_model": best_state or {}, "best_score": list(best_score or ()),
                       "best_epoch": result.best_epoch or 0, "stale": stale,
                       "stopped_early": result.stopped_early}, checkpoint)
            if on_epoch and group.is_main:
                on_epoch(epoch, row)
    finally:
        _restore_batchnorm(synced)
    if best_state is not None:  # the best epoch's weights, not the last one's
        student.load_state_dict(best_state)
    student.eval()
    return result


@torch.no_grad()
def predict_logits(
    model: VideoRecognizer, data: Dataset, *, batch_size: int = 16, device: torch.device | None = None,
    num_workers: int = 0,
) -> np.ndarray:
    """Logits ``[N, K]`` for every clip of ``data`` (centre-of-segment frames), in eval mode."""
    device = device or default_device()
    model.to(device).eval()
    out = []
    for x, *_ in clip_loader(data, batch_size=batch_size, train=False, num_workers=num_workers,
                             pin_memory=device.type == "cuda"):
        out.append(model(x.to(device)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.num_classes), dtype=np.float32)


def predict_proba(
    model: VideoRecognizer, data: Dataset, *, batch_size: int = 16, device: torch.device | None = None,
    num_workers: int = 0,
) -> np.ndarray:
    """Softmax probabilities ``[N, K]`` for every clip of ``data`` (centre-of-segment frames)."""
    logits = predict_logits(model, data, batch_size=batch_size, device=device, num_workers=num_workers)
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


@torch.no_grad()
def embed(
    model: VideoRecognizer, data: Dataset, *, batch_size: int = 16, device: torch.device | None = None,
    num_workers: int = 0,
) -> np.ndarray:
    """Each clip's feature before the classifier, ``[N, C]`` (pooled over T, H and W)."""
    device = device or default_device()
    model.to(device).eval()
    out = []
    last = list(model.stages)[-1]
    for x, *_ in clip_loader(data, batch_size=batch_size, train=False, num_workers=num_workers):
        _, feats = model.forward_features(x.to(device), (last,))
        out.append(feats[last].float().mean(dim=(1, 3, 4)).cpu())
    return torch.cat(out).numpy()
