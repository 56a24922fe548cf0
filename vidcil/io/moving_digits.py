"""Bundled benchmark: moving handwritten digits, where the class lives in the motion.

Every video shows one digit from scikit-learn's bundled ``digits`` set (8x8 images, no download)
moving over a noisy textured background. The *class* is the motion (slide right, rotate
clockwise, zoom in, ...); digit identity, size, colour, start position, speed and noise are drawn
at random, so no single frame tells the class: ``slide_right`` and ``slide_left`` (or ``zoom_in``
and ``zoom_out``) contain the same frames in reverse order.

The stream is written in the incoming-batch contract of ARCHITECTURE.md::

    <landing>/<batch_id>/labels.csv      video,label,split
    <landing>/<batch_id>/<split>/<label>/<n>.mp4   (H.264, yuv420p)

It is deterministic given the seed: the same arguments write byte-identical files.
"""

from __future__ import annotations

import csv
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidcil.io.video import write_video

# Ordered so that the first batch holds four different kinds of motion and every later batch
# brings the time-reversed (or otherwise confusable) counterparts of earlier classes.
MOTIONS: tuple[str, ...] = (
    "slide_right",
    "slide_down",
    "rotate_cw",
    "zoom_in",
    "slide_left",
    "slide_up",
    "rotate_ccw",
    "zoom_out",
    "bounce_horizontal",
    "orbit_cw",
)


@dataclass(frozen=True)
class BatchSpec:
    """One incoming batch: which classes it brings and how its footage looks."""

    batch_id: str
    classes: tuple[str, ...]
    train_per_class: int = 40
    test_per_class: int = 12
    noise: float = 0.04  # std of per-frame Gaussian pixel noise, in [0, 1] intensity
    background_cells: int = 4  # coarseness of the background texture (cells per side)


def default_stream(
    n_class_batches: int = 4,
    shift_batch: bool = True,
    *,
    train_per_class: int = 40,
    test_per_class: int = 12,
    shift_train_per_class: int = 16,
    shift_test_per_class: int = 6,
) -> list[BatchSpec]:
    """The default stream: 4 classes, then 2 new classes per batch, then new footage of all.

    The last batch (``shift_batch``) brings no new class: new, noisier footage with a finer
    background of every class seen so far (domain shift).
    """
    groups = [MOTIONS[:4]] + [MOTIONS[i : i + 2] for i in range(4, len(MOTIONS), 2)]
    groups = groups[:n_class_batches]
    specs = [BatchSpec(f"b{i:03d}", tuple(g), train_per_class, test_per_class) for i, g in enumerate(groups)]
    if shift_batch:
        seen = tuple(c for g in groups for c in g)
        specs.append(BatchSpec(f"b{len(specs):03d}", seen, shift_train_per_class, shift_test_per_class,
                               noise=0.07, background_cells=8))
    return specs


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target


def _trajectory(motion: str, rng: np.random.Generator, n_frames: int, size: int, sprite: float):
    """Per-frame centre (x, y) in pixels, rotation (radians, clockwise) and scale factor."""
    t = np.linspace(0.0, 1.0, n_frames)
    margin = sprite * 0.6
    centre = rng.uniform(margin + size * 0.15, size - margin - size * 0.15, size=2)
    angle0 = rng.uniform(-0.3, 0.3)
    x = np.full(n_frames, centre[0])
    y = np.full(n_frames, centre[1])
    angle = np.full(n_frames, angle0)
    scale = np.ones(n_frames)
    dist = rng.uniform(0.3, 0.5) * size

    if motion in ("slide_right", "slide_left", "slide_down", "slide_up"):
        sign = 1.0 if motion in ("slide_right", "slide_down") else -1.0
        axis = x if motion in ("slide_right", "slide_left") else y
        start = size / 2 - sign * dist / 2 + rng.uniform(-0.1, 0.1) * size
        axis[:] = start + sign * dist * t
    elif motion in ("rotate_cw", "rotate_ccw"):
        sign = 1.0 if motion == "rotate_cw" else -1.0
        angle[:] = angle0 + sign * rng.uniform(0.6, 1.0) * math.pi * t
    elif motion in ("zoom_in", "zoom_out"):
        lo, hi = rng.uniform(0.45, 0.6), rng.uniform(1.3, 1.6)
        scale[:] = lo + (hi - lo) * (t if motion == "zoom_in" else 1.0 - t)
    elif motion == "bounce_horizontal":
        tri = 1.0 - np.abs(2.0 * t - 1.0)  # 0 -> 1 -> 0
        x[:] = size / 2 - dist / 2 + dist * tri
    elif motion == "orbit_cw":
        radius = rng.uniform(0.15, 0.22) * size
        phase = rng.uniform(0, 2 * math.pi)
        x[:] = size / 2 + radius * np.cos(phase + 2 * math.pi * t)
        y[:] = size / 2 + radius * np.sin(phase + 2 * math.pi * t)
    else:
        raise ValueError(f"unknown motion {motion!r}; known: {', '.join(MOTIONS)}")
    return x, y, angle, scale


def render_clip(
    motion: str,
    digit: np.ndarray,
    rng: np.random.Generator,
    *,
    n_frames: int = 16,
    size: int = 64,
    noise: float = 0.04,
    background_cells: int = 4,
) -> np.ndarray:
    """Render one clip as uint8 ``[T, H, W, 3]``."""
    sprite = rng.uniform(0.3, 0.4) * size  # digit side in pixels
    x, y, angle, scale = _trajectory(motion, rng, n_frames, size, sprite)

    # Inverse affine map from output pixels to sprite coordinates, one per frame.
    theta = np.zeros((n_frames, 2, 3), dtype=np.float32)
    for i in range(n_frames):
        half = sprite * scale[i] / 2
        c, s = math.cos(-angle[i]), math.sin(-angle[i])
        rot = np.array([[c, -s], [s, c]])
        theta[i, :, :2] = rot * (size / 2) / half
        offset = np.array([size / 2 - 0.5 - x[i], size / 2 - 0.5 - y[i]])
        theta[i, :, 2] = rot @ offset / half
    grid = F.affine_grid(torch.from_numpy(theta), [n_frames, 1, size, size], align_corners=False)
    src = torch.from_numpy(digit)[None, None].expand(n_frames, 1, 8, 8)
    alpha = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha = alpha[:, 0].numpy()[..., None]  # [T, H, W, 1]

    cells = rng.uniform(0.0, 1.0, size=(1, 3, background_cells, background_cells))
    background = F.interpolate(
        torch.from_numpy(cells.astype(np.float32)), size=(size, size), mode="bicubic"
    )[0].permute(1, 2, 0).numpy()
    background = 0.15 + 0.45 * np.clip(background, 0, 1)  # keep the digit brighter on average
    colour = rng.uniform(0.75, 1.0, size=3).astype(np.float32)

    frames = background[None] * (1 - alpha) + colour * alpha
    frames = frames + rng.normal(0.0, noise, size=frames.shape)
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)


def generate_stream(
    landing: Path,
    specs: list[BatchSpec],
    *,
    seed: int = 0,
    n_frames: int = 16,
    size: int = 64,
    fps: int = 8,
    only: list[str] | None = None,
) -> list[Path]:
    """Write every batch of ``specs`` under ``landing`` in the incoming-batch contract.

    Returns the batch folders. Videos are rendered and encoded on every core; each batch's
    ``labels.csv`` is written last: a batch is complete when it exists.
    ``only``: write just these batch ids (the others' random draws are unaffected).
    """
    jobs, labels = [], {}
    for b, spec in enumerate(specs):
        if only is not None and spec.batch_id not in only:
            continue
        folder = Path(landing) / spec.batch_id
        labels[folder] = []
        for motion in spec.classes:
            for split, count in (("train", spec.train_per_class), ("test", spec.test_per_class)):
                for n in range(count):
                    rel = f"{split}/{motion}/{n:03d}.mp4"
                    # One generator per video: any video is reproducible on its own.
                    key = (seed, b, MOTIONS.index(motion), int(split == "test"), n)
                    jobs.append((folder / rel, motion, key, spec.noise, spec.background_cells, n_frames, size, fps))
                    labels[folder].append({"video": rel, "label": motion, "split": split})
    workers = max(1, min(os.cpu_count() or 1, len(jobs) // 8))
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            list(pool.map(_write_clip, jobs, chunksize=8))
    else:
        for job in jobs:
            _write_clip(job)
    for folder, rows in labels.items():
        with open(folder / "labels.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["video", "label", "split"])
            writer.writeheader()
            writer.writerows(rows)
    return list(labels)


def _write_clip(job) -> None:
    path, motion, key, noise, cells, n_frames, size, fps = job
    rng = np.random.default_rng(key)
    images = _digits()[0]
    digit = images[rng.integers(len(images))]
    clip = render_clip(motion, digit, rng, n_frames=n_frames, size=size, noise=noise, background_cells=cells)
    write_video(path, clip, fps=fps)
