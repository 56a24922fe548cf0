"""A bundled stream made differently from moving digits: random-dot kinematograms.

The moving-digits stream (:mod:`vidcil.io.moving_digits`, and :mod:`vidcil.io.realistic`, its
footage filmed differently) shows one object, a digit, moving over a background. Here there is
no object at all: the whole field is a cloud of random dots, and the class is the *flow field*
that moves them — drift in a direction, expansion, contraction, rotation, a horizontal
oscillation, a spiral — the stimulus of motion psychophysics (Newsome & Paré, 1988). How it
differs from moving digits:

- no shape to learn: every frame is random dots (their count, size, colours and contrast drawn
  per clip), so appearance carries nothing and a single frame says nothing of the class;
- the motion is everywhere, not at one place: each dot moves by the field at its position;
- the motion is hidden in noise: only a fraction of the dots (the *coherence*, 55-90 %) follows
  the field, the others jump to random places on every frame, and a dot that follows lives half
  a clip to a clip, then is drawn again elsewhere;
- reversed flows (drift left / right, expand / contract, spin cw / ccw) have the same frames in
  reverse order, as in the other streams.

Batches follow the default stream's shape (4 flows, then 2 new ones per batch, then new, harder
footage of every flow: lower coherence, more sensor noise). Deterministic given the seed: the
same arguments write byte-identical files, in the incoming-batch contract::

    <landing>/<batch_id>/labels.csv                      video,label,split
    <landing>/<batch_id>/<split>/<flow>/<n>.mp4          (H.264, yuv420p)
"""

from __future__ import annotations

import csv
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidcil.io.video import write_video

# Ordered as MOTIONS: the first batch holds four kinds of flow, later batches their reversals and two more.
FLOWS: tuple[str, ...] = (
    "drift_right",
    "drift_down",
    "spin_cw",
    "expand",
    "drift_left",
    "drift_up",
    "spin_ccw",
    "contract",
    "oscillate_horizontal",
    "spiral_out",
)


@dataclass(frozen=True)
class DotBatch:
    """One incoming batch of the dots stream: which flows it brings and how hard its footage is."""

    batch_id: str
    classes: tuple[str, ...]
    train_per_class: int = 24
    test_per_class: int = 12
    noise: float = 0.03  # std of per-frame Gaussian pixel noise, in [0, 1] intensity
    coherence: tuple[float, float] = (0.65, 0.9)  # fraction of dots that follow the flow, per clip


def dots_stream(n_class_batches: int = 4, shift_batch: bool = True, *, train_per_class: int = 24,
                test_per_class: int = 12, shift_train_per_class: int = 12,
                shift_test_per_class: int = 6) -> list[DotBatch]:
    """4 flows, then 2 new flows per batch; then (``shift_batch``) new, harder footage of every flow seen."""
    groups = [FLOWS[:4]] + [FLOWS[i : i + 2] for i in range(4, len(FLOWS), 2)]
    groups = groups[:n_class_batches]
    specs = [DotBatch(f"b{i:03d}", tuple(g), train_per_class, test_per_class) for i, g in enumerate(groups)]
    if shift_batch:
        seen = tuple(c for g in groups for c in g)
        specs.append(DotBatch(f"b{len(specs):03d}", seen, shift_train_per_class, shift_test_per_class,
                              noise=0.06, coherence=(0.55, 0.75)))
    return specs


def flow(name: str, p: np.ndarray, t: float, centre: np.ndarray, speed: float) -> np.ndarray:
    """Velocity of dots at ``p`` ``[N, 2]`` (x right, y down, the field spanning [-1, 1]) at clip time
    ``t`` in [0, 1], per frame, for flow ``name``."""
    r = p - centre
    if name.startswith("drift_"):
        direction = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}[name[6:]]
        return np.broadcast_to(np.array(direction, dtype=float) * speed, p.shape)
    if name in ("spin_cw", "spin_ccw"):  # y points down: (-y, x) turns clockwise on screen
        sign = 1.0 if name == "spin_cw" else -1.0
        return sign * speed * 2.0 * np.stack([-r[:, 1], r[:, 0]], axis=1)
    if name in ("expand", "contract"):
        return (1.0 if name == "expand" else -1.0) * speed * 2.0 * r
    if name == "oscillate_horizontal":  # right, then left, then right: one full period per clip
        return np.broadcast_to(np.array([math.cos(2 * math.pi * t), 0.0]) * speed * 1.5, p.shape)
    if name == "spiral_out":
        return speed * 1.4 * (np.stack([-r[:, 1], r[:, 0]], axis=1) + r)
    raise ValueError(f"unknown flow {name!r}; known: {', '.join(FLOWS)}")


def render_dots_clip(name: str, rng: np.random.Generator, *, n_frames: int = 16, size: int = 64,
                     noise: float = 0.03, coherence: tuple[float, float] = (0.65, 0.9)) -> np.ndarray:
    """Render one clip of flow ``name`` as uint8 ``[T, H, W, 3]``."""
    density = rng.uniform(0.012, 0.03)  # dots per pixel: 3-5 px apart on average
    n = max(8, int(density * size * size))
    radius = rng.uniform(0.9, 1.8) * size / 64  # pixels
    signal = rng.random(n) < rng.uniform(*coherence)  # these follow the flow; the others jump every frame
    lifetime = int(rng.integers(8, 17)) * n_frames / 16  # frames a signal dot lives, then drawn again at random
    speed = rng.uniform(0.02, 0.04) * 16 / max(n_frames, 2)  # field units per frame: 10-20 px per clip at 64 px
    centre = rng.uniform(-0.3, 0.3, size=2)
    dark, light = rng.uniform(0.05, 0.35, size=3), rng.uniform(0.65, 1.0, size=3)
    background, ink = (dark, light) if rng.random() < 0.5 else (light, dark)
    p = rng.uniform(-1, 1, size=(n, 2))
    age = rng.uniform(0, lifetime, size=n)  # staggered: dots are not all reborn together
    ys, xs = np.mgrid[0:size, 0:size]
    pix = (np.stack([xs, ys], axis=-1).reshape(-1, 2) + 0.5) / size * 2 - 1  # pixel centres in field units
    scale = size / 2  # field units -> pixels
    frames = np.empty((n_frames, size, size, 3), dtype=np.float32)
    for f in range(n_frames):
        # Anti-aliased disks: coverage from each pixel's distance to its nearest dot.
        d2 = ((pix[:, None, :] - p[None, :, :]) ** 2).sum(-1).min(axis=1)
        cover = np.clip(radius + 0.5 - np.sqrt(d2) * scale, 0, 1).reshape(size, size, 1)
        frames[f] = background * (1 - cover) + ink * cover
        moved = p + flow(name, p, f / max(n_frames - 1, 1), centre, speed)
        age += 1
        reborn = ~signal | (age >= lifetime) | (np.abs(moved) > 1).any(axis=1)
        p = np.where(reborn[:, None], rng.uniform(-1, 1, size=(n, 2)), moved)
        age[reborn & signal] = 0
    frames += rng.normal(0.0, noise, size=frames.shape).astype(np.float32)
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)


def _write_clip(job) -> None:
    path, name, key, noise, coherence, n_frames, size, fps = job
    clip = render_dots_clip(name, np.random.default_rng(key), n_frames=n_frames, size=size, noise=noise,
                            coherence=coherence)
    write_video(path, clip, fps=fps)


def generate_dots_stream(landing: Path, specs: list[DotBatch], *, seed: int = 0, n_frames: int = 16,
                         size: int = 64, fps: int = 8, only: list[str] | None = None) -> list[Path]:
    """Write every batch of ``specs`` under ``landing`` (each batch's ``labels.csv`` last: a batch is
    complete when it exists). ``only``: just these batch ids (the others' random draws are unaffected)."""
    jobs, labels = [], {}
    for b, spec in enumerate(specs):
        if only is not None and spec.batch_id not in only:
            continue
        folder = Path(landing) / spec.batch_id
        labels[folder] = []
        for name in spec.classes:
            for split, count in (("train", spec.train_per_class), ("test", spec.test_per_class)):
                for i in range(count):
                    rel = f"{split}/{name}/{i:03d}.mp4"
                    key = (seed, 7, b, FLOWS.index(name), int(split == "test"), i)  # one generator per video
                    jobs.append((folder / rel, name, key, spec.noise, spec.coherence, n_frames, size, fps))
                    labels[folder].append({"video": rel, "label": name, "split": split})
    workers = max(1, min(os.cpu_count() or 1, len(jobs) // 8))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_clip, jobs, chunksize=8))
    else:
        for job in jobs:
            _write_clip(job)
    for folder, rows in labels.items():
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "labels.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["video", "label", "split"])
            writer.writeheader()
            writer.writerows(rows)
    return list(labels)
