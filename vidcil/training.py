"""Training a student: cross-entropy, plus ``lambda * L_distil`` from a frozen teacher.

``loss = CE(student(x), y) + lam * distiller(student_features, teacher_features)``. The teacher is
in eval mode with gradients off; only the student's parameters get gradients. Runs on CUDA when
there is a GPU (mixed precision) and on the CPU otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from vidcil.data.clips import ClipDataset
from vidcil.distill.losses import TimeSpaceDistillation
from vidcil.models.tsm import VideoRecognizer


@dataclass
class TrainResult:
    steps: int = 0
    epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def train(
    student: VideoRecognizer,
    data: ClipDataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    teacher: VideoRecognizer | None = None,
    distiller: TimeSpaceDistillation | None = None,
    lam: float = 1.0,
    stages: tuple[str, ...] = (),
    device: torch.device | None = None,
    on_epoch=None,
) -> TrainResult:
    """Train ``student`` in place on ``data``; distil from ``teacher`` when one is given.

    ``on_epoch(epoch, row)`` is called after each epoch (progress display, metric logging);
    ``row`` holds the epoch's mean loss terms, ``train_accuracy`` and ``steps`` so far.
    """
    device = device or default_device()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=len(data) > batch_size,
                        generator=generator)
    student.to(device).train()
    if teacher is not None:
        if distiller is None:
            raise ValueError("a teacher needs a distiller")
        if distiller.uses_features and not stages:
            raise ValueError(f"{type(distiller).__name__} distils features: name at least one stage")
        freeze(teacher).to(device)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    total = max(1, epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, len(loader))) * 0.5 * (1 + math.cos(math.pi * s / total))
    )
    amp = device.type == "cuda"
    result = TrainResult()
    for epoch in range(epochs):
        sums: dict[str, float] = {}
        correct = seen = 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=amp):
                logits, s_feats = student.forward_features(x, stages if teacher is not None else ())
                terms = {"ce": F.cross_entropy(logits, y)}
                if teacher is not None:
                    with torch.no_grad():
                        t_logits, t_feats = teacher.forward_features(x, stages)
                    terms.update(distiller(s_feats, t_feats, logits, t_logits))
                    terms["loss"] = terms["ce"] + lam * terms["distil"]
                else:
                    terms["loss"] = terms["ce"]
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            sched.step()
            result.steps += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        row = {k: v / seen for k, v in sums.items()} | {"train_accuracy": correct / seen, "steps": result.steps}
        result.history.append(row)
        result.epochs += 1
        if on_epoch:
            on_epoch(epoch, row)
    student.eval()
    return result


@torch.no_grad()
def predict_proba(
    model: VideoRecognizer, data: ClipDataset, *, batch_size: int = 16, device: torch.device | None = None
) -> np.ndarray:
    """Softmax probabilities ``[N, K]`` for every clip of ``data`` (centre-of-segment frames)."""
    device = device or default_device()
    model.to(device).eval()
    out = []
    for x, _ in DataLoader(data, batch_size=batch_size, shuffle=False):
        out.append(torch.softmax(model(x.to(device)).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.num_classes), dtype=np.float32)


@torch.no_grad()
def embed(
    model: VideoRecognizer, data: ClipDataset, *, batch_size: int = 16, device: torch.device | None = None
) -> np.ndarray:
    """Each clip's feature before the classifier, ``[N, C]`` (pooled over T, H and W)."""
    device = device or default_device()
    model.to(device).eval()
    out = []
    last = list(model.stages)[-1]
    for x, _ in DataLoader(data, batch_size=batch_size, shuffle=False):
        _, feats = model.forward_features(x.to(device), (last,))
        out.append(feats[last].float().mean(dim=(1, 3, 4)).cpu())
    return torch.cat(out).numpy()
