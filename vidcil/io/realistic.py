"""A second bundled stream that looks like what people land: phone and camera video of any size.

The classes are the motions of :mod:`vidcil.io.moving_digits` (same ``MOTIONS``, the same
trajectories, the same digit sprites), but the footage is made differently, so it is a genuinely
different stream: a smooth colour-gradient background under a slowly drifting texture, a bigger,
saturated digit with a drop shadow, a vignette, mild camera shake and sensor noise. Every clip is
filmed differently too: 240p to 1080p, landscape and portrait, 10 to 60 frames per second, 2 to 30
seconds, in mp4, mkv, mov (H.264) or webm (VP9). Trajectories run in normalised time, so a motion
spans the whole clip whatever its length and frame rate; reversed motions stay confusable frame by
frame, as in the bundled stream.

Clips are rendered and encoded one frame at a time: a 30 s 60 fps 1080p clip (1800 frames of 6 MB)
never sits in memory; a clip costs a few frames plus the encoder's state (~50-80 MB for x264 and
~180 MB for VP9 at 1080p, whatever the clip's length). Frames are rendered
at ``render_short_side`` at most and scaled to the clip's size by FFmpeg (the sprite is an 8x8
digit and the background is smooth, so little detail is lost, and rendering stays cheap at 1080p).

The stream is written in the incoming-batch contract, deterministic given the seed (the same
profile writes byte-identical files)::

    <landing>/<batch_id>/labels.csv                    video,label,split
    <landing>/<batch_id>/<split>/<label>/<n>.<ext>     ext in mp4, mkv, webm, mov
"""

from __future__ import annotations

import colorsys
import csv
import math
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from vidcil.io.moving_digits import MOTIONS, _digits, _trajectory

# (width, height); every dimension even (H.264 and VP9 in yuv420p need it).
LANDSCAPE: tuple[tuple[int, int], ...] = ((426, 240), (640, 360), (854, 480), (1280, 720), (1920, 1080))
PORTRAIT: tuple[tuple[int, int], ...] = ((360, 640), (480, 854), (720, 1280), (1080, 1920))
FRAME_RATES: tuple[int, ...] = (10, 15, 24, 25, 30, 50, 60)
CONTAINERS: tuple[str, ...] = ("mp4", "mkv", "webm", "mov")

# FFmpeg muxer and encoder per container, each like a different kind of device: mp4 as many
# Android phones (H.264 without B-frames or CABAC), mkv as a screen recorder (CABAC, no B-frames),
# mov as an iPhone (High profile, B-frames: decode order differs from display order), webm as a
# browser recording (VP9). Encoders run single-threaded and muxing is bit-exact (no random
# Matroska/WebM UIDs, no library version string), so the same clip always gives the same bytes.
# x264 runs without its assembly paths, as in :func:`vidcil.io.video.write_video`: measured here,
# with them 2-6 of 6 single-threaded encodes of one 426x240 or 854x480 clip differ (widths that
# are not a multiple of 16). Without assembly x264 is ~4x slower, so its fastest preset is used;
# VP9 runs in realtime mode (the default mode is ~10x slower at 1080p, for files nobody watches).
_MUXER = {"mp4": "mp4", "mkv": "matroska", "webm": "webm", "mov": "mov"}
_X264 = {"crf": "23", "preset": "ultrafast", "threads": "1"}
_ENCODER = {
    "mp4": ("libx264", {**_X264, "x264-params": "asm=0"}),
    "mkv": ("libx264", {**_X264, "x264-params": "asm=0:cabac=1"}),
    "mov": ("libx264", {**_X264, "x264-params": "asm=0:cabac=1:bframes=2:deblock=1:8x8dct=1"}),
    # No lookahead: frames go out as they come (VP9 still holds ~180 MB of state at 1080p).
    "webm": ("libvpx-vp9", {"crf": "34", "b": "0", "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                            "threads": "1", "row-mt": "0"}),
}


@dataclass(frozen=True)
class RealisticProfile:
    """How the realistic stream is made: its batches, how many clips, and how they are filmed.

    Batches are those of the default stream (4 classes, then 2 new classes per batch), without
    the domain-shift batch: this whole stream is new footage. Durations are log-uniform between
    ``min_seconds`` and ``max_seconds`` (short clips are the common case; lower ``max_seconds``
    to keep tests small).
    """

    class_batches: int = 2
    train_per_class: int = 20
    test_per_class: int = 6
    min_seconds: float = 2.0
    max_seconds: float = 30.0
    landscape: tuple[tuple[int, int], ...] = LANDSCAPE
    portrait: tuple[tuple[int, int], ...] = PORTRAIT
    frame_rates: tuple[int, ...] = FRAME_RATES
    containers: tuple[str, ...] = CONTAINERS
    sensor_noise: float = 0.006  # the noisiest clip's per-frame noise std, in [0, 1] intensity
    render_short_side: int = 360  # frames are drawn at most this size, then scaled by FFmpeg
    seed: int = 0

    def __post_init__(self):
        groups = 1 + math.ceil((len(MOTIONS) - 4) / 2)
        if not 1 <= self.class_batches <= groups:
            raise ValueError(f"class_batches must be 1-{groups}, got {self.class_batches}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 0 < min_seconds <= max_seconds, got {self.min_seconds}, {self.max_seconds}")
        if unknown := set(self.containers) - set(_MUXER):
            raise ValueError(f"unknown containers {sorted(unknown)}; known: {', '.join(_MUXER)}")
        if any(w % 2 or h % 2 for w, h in self.landscape + self.portrait):
            raise ValueError("every resolution needs even width and height (yuv420p)")

    def batches(self) -> list[tuple[str, tuple[str, ...]]]:
        """``(batch_id, classes)`` per batch, in arrival order."""
        groups = [MOTIONS[:4]] + [MOTIONS[i : i + 2] for i in range(4, len(MOTIONS), 2)]
        return [(f"b{i:03d}", tuple(g)) for i, g in enumerate(groups[: self.class_batches])]


@dataclass(frozen=True)
class RealisticClip:
    """One video of the stream: where it goes, what moves in it, and how it is filmed."""

    video: str  # path inside the batch folder: <split>/<label>/<n>.<ext>
    label: str
    split: str
    key: tuple[int, ...]  # seeds the clip's own generator: every clip is reproducible on its own
    width: int
    height: int
    fps: int
    seconds: float
    container: str
    noise: float = 0.006  # std of per-frame sensor noise, in [0, 1] intensity

    @property
    def n_frames(self) -> int:
        return max(2, round(self.fps * self.seconds))


def plan_stream(profile: RealisticProfile) -> dict[str, list[RealisticClip]]:
    """Every clip of every batch, by batch id, without rendering anything.

    Container and orientation are dealt from a deck of every (container, orientation) pair,
    shuffled anew for each 8 clips of a batch, so every batch mixes all of them (from 8 clips on)
    in no order a model could learn; resolution within the orientation, frame rate and duration
    come from the clip's own generator.
    """
    pairs = list(product(profile.containers, ("landscape", "portrait")))
    plan = {}
    for b, (batch_id, classes) in enumerate(profile.batches()):
        rows = [(motion, split, n) for motion in classes
                for split, count in (("train", profile.train_per_class), ("test", profile.test_per_class))
                for n in range(count)]
        deck_rng = np.random.default_rng((profile.seed, 1, b))
        deck = [pairs[i] for _ in range(math.ceil(len(rows) / len(pairs))) for i in deck_rng.permutation(len(pairs))]
        clips = []
        for (motion, split, n), (container, orientation) in zip(rows, deck):
            key = (profile.seed, 1, b, MOTIONS.index(motion), int(split == "test"), n)  # 1: this stream
            rng = np.random.default_rng(key + (0,))
            sizes = profile.landscape if orientation == "landscape" else profile.portrait
            width, height = sizes[rng.integers(len(sizes))]
            fps = int(profile.frame_rates[rng.integers(len(profile.frame_rates))])
            seconds = float(np.exp(rng.uniform(np.log(profile.min_seconds), np.log(profile.max_seconds))))
            noise = profile.sensor_noise * rng.uniform(0.3, 1.0)
            clips.append(RealisticClip(f"{split}/{motion}/{n:03d}.{container}", motion, split, key,
                                       int(width), int(height), fps, round(seconds, 3), container, round(noise, 5)))
        plan[batch_id] = clips
    return plan


def render_frames(clip: RealisticClip, *, render_short_side: int = 360):
    """Yield the clip's frames one by one as uint8 RGB ``[h, w, 3]`` at the render size.

    The render size has the clip's aspect ratio and a short side of at most ``render_short_side``.
    Coordinates are in pixels of that size; the scene is laid out in units of its short side, so
    the sprite and the shake look the same in portrait and landscape.
    """
    rng = np.random.default_rng(clip.key + (1,))
    short = min(clip.width, clip.height)
    k = min(1.0, render_short_side / short)
    w, h = max(2, round(clip.width * k)), max(2, round(clip.height * k))
    side = min(w, h)
    n = clip.n_frames
    t_sec = np.arange(n) / clip.fps

    images = _digits()[0]
    digit = torch.from_numpy(images[rng.integers(len(images))])[None, None]
    sprite = rng.uniform(0.35, 0.5)  # side, in short sides (the bundled stream: 0.3-0.4)
    # Normalised time: the motion spans the whole clip. Positions are fractions of width and height.
    cx, cy, angle, scale = _trajectory(clip.label, rng, n, 1.0, sprite)
    hue = rng.uniform()
    colour = torch.tensor(colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 0.9), rng.uniform(0.85, 1.0)),
                          dtype=torch.float32)
    shadow = rng.uniform(0.015, 0.03, size=2) * side  # drop shadow offset, pixels

    # Background: a linear gradient between two muted colours, times a drifting texture.
    c0 = torch.tensor(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.6), rng.uniform(0.25, 0.45)))
    c1 = torch.tensor(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.6), rng.uniform(0.45, 0.65)))
    phi = rng.uniform(0, 2 * math.pi)
    cells = torch.from_numpy(rng.uniform(size=(1, 1) + tuple(rng.integers(3, 7, size=2) * 2)).astype(np.float32))
    texture_amp = rng.uniform(0.15, 0.3)
    texture_zoom = rng.uniform(1.5, 2.5)  # texture extent, in short sides
    drift_dir = rng.uniform(0, 2 * math.pi)
    drift = rng.uniform(0.1, 0.3) * side  # pixels over the whole clip
    # Camera shake: two sinusoids per axis, in real time (a hand shakes at 1-4 Hz, whatever the clip).
    freq = rng.uniform(0.5, 4.0, size=(2, 2))
    phase = rng.uniform(0, 2 * math.pi, size=(2, 2))
    amp = rng.uniform(0.002, 0.008, size=(2, 2)) * side
    shake = (amp[..., None] * np.sin(2 * math.pi * freq[..., None] * t_sec + phase[..., None])).sum(1)  # [2, T]

    # Channels first ([3, h, w]): torch is several times faster than with a trailing axis of 3.
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                            indexing="ij")
    pixels = torch.stack([xs, ys], dim=-1)  # [h, w, 2], pixel centres
    vignette = (1.0 - 0.35 * ((xs - w / 2) ** 2 + (ys - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2))[None]
    direction = np.array([math.cos(phi), math.sin(phi)])
    gradient = ((pixels - torch.tensor([w / 2, h / 2])) @ torch.from_numpy(direction).float()) / max(w, h) + 0.5
    c0, dc = c0[:, None, None], (c1 - c0)[:, None, None]
    colour = colour[:, None, None]
    # The texture, upsampled once to ~2 px per render pixel; each frame samples it bilinearly, shifted.
    extent = texture_zoom * side
    texture = F.interpolate(cells, scale_factor=float(math.ceil(extent / cells.shape[-1] / 2)), mode="bicubic",
                            align_corners=False)
    texture_grid = (pixels / extent * 2 - 1)[None]
    drift_step = drift / max(1, n - 1) * np.array([math.cos(drift_dir), math.sin(drift_dir)])
    shadow_t = torch.from_numpy(shadow).float()
    reach = sprite * side * float(scale.max()) / 2 * math.sqrt(2) + float(np.abs(shadow).max()) + 2
    noise_gen = torch.Generator().manual_seed(int(rng.integers(2**62)))

    for i in range(n):
        shift = shake[:, i]  # what the shaken camera sees: pixel p shows the world at p + shift
        g = (gradient + float(shift @ direction) / max(w, h)).clamp_(0, 1)
        offset = torch.from_numpy((shift + drift_step * i) / extent * 2).float()
        tex = F.grid_sample(texture, texture_grid + offset, mode="bilinear", padding_mode="reflection",
                            align_corners=False)[0]
        light = tex.sub_(0.5).mul_(texture_amp).add_(1).mul_(vignette)  # [1, h, w]
        frame = (dc * g).add_(c0).mul_(light)  # [3, h, w]

        # The sprite, drawn only in the box it can reach: the inverse map from camera pixels to the
        # sprite's [-1, 1] square, as in moving_digits.
        centre = np.array([cx[i] * w, cy[i] * h]) - shift
        x0, x1 = max(0, int(centre[0] - reach)), min(w, int(centre[0] + reach) + 1)
        y0, y1 = max(0, int(centre[1] - reach)), min(h, int(centre[1] + reach) + 1)
        if x0 < x1 and y0 < y1:
            half = sprite * side * scale[i] / 2
            c, s = math.cos(-angle[i]), math.sin(-angle[i])
            rot = torch.tensor([[c, s], [-s, c]], dtype=torch.float32) / half  # rows are points: p @ rot
            local = pixels[y0:y1, x0:x1] - torch.from_numpy(centre).float()
            grids = torch.stack([local @ rot, (local - shadow_t) @ rot])
            alpha = F.grid_sample(digit.expand(2, 1, 8, 8), grids, mode="bilinear", padding_mode="zeros",
                                  align_corners=False)[:, 0]
            alpha = alpha.sub_(0.2).div_(0.45).clamp_(0, 1)
            alpha = alpha * alpha * (3 - 2 * alpha)  # smoothstep: crisper edges than the bundled blur
            body, shade = alpha[0:1], alpha[1:2]
            lit = colour * (0.85 + 0.15 * grids[0, ..., 1].clamp(-1, 1))  # lit from below
            box = frame[:, y0:y1, x0:x1]
            box.mul_((1 - 0.5 * shade) * (1 - body)).add_(lit * body * vignette[:, y0:y1, x0:x1])
        frame.add_(torch.randn((1, h, w), generator=noise_gen), alpha=clip.noise)
        frame = frame.mul_(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0)
        yield frame.to(torch.uint8, memory_format=torch.contiguous_format).numpy()


def write_clip(path: str | Path, clip: RealisticClip, *, render_short_side: int = 360) -> int:
    """Render and encode ``clip`` into ``path`` frame by frame; returns the bytes written.

    Each frame is scaled to the clip's size and converted to yuv420p by FFmpeg before the encoder
    sees it. Written to a temporary name and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    codec, options = _ENCODER[clip.container]
    try:
        with av.open(str(tmp), mode="w", format=_MUXER[clip.container], options={"fflags": "+bitexact"}) as out:
            stream = out.add_stream(codec, rate=clip.fps)
            stream.width, stream.height, stream.pix_fmt = clip.width, clip.height, "yuv420p"
            stream.options = dict(options)
            for i, rgb in enumerate(render_frames(clip, render_short_side=render_short_side)):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame = frame.reformat(width=clip.width, height=clip.height, format="yuv420p",
                                       interpolation="BILINEAR")
                frame.pts = i
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path.stat().st_size


def generate_realistic_stream(
    landing: Path,
    profile: RealisticProfile,
    *,
    only: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Write the realistic stream under ``landing`` in the incoming-batch contract.

    Returns the batch folders. Clips are rendered and encoded on every core, longest first (they
    range over ~1000x in pixels); each batch's ``labels.csv`` is written last: a batch is complete
    when it exists, and a complete batch is skipped (it would be the same bytes). An interrupted
    batch resumes: a clip's file only appears once it is whole, so existing ones are kept.
    ``only``: write just these batch ids. ``progress(done, total)`` is called after each clip.
    """
    landing = Path(landing)
    plan = {b: clips for b, clips in plan_stream(profile).items() if only is None or b in only}
    todo = [(landing / b / c.video, c, profile.render_short_side)
            for b, clips in plan.items() if not (landing / b / "labels.csv").is_file() for c in clips
            if not (landing / b / c.video).is_file()]
    todo.sort(key=lambda job: -job[1].n_frames * job[1].width * job[1].height)
    workers = max(1, min(os.cpu_count() or 1, len(todo)))
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for done, _ in enumerate(pool.map(_write_job, todo), 1):
                if progress:
                    progress(done, len(todo))
    else:
        for done, job in enumerate(todo, 1):
            _write_job(job)
            if progress:
                progress(done, len(todo))
    for batch_id, clips in plan.items():
        labels = landing / batch_id / "labels.csv"
        if labels.is_file():
            continue
        for stale in labels.parent.glob("*/*/.*.partial"):  # left by an interrupted run
            stale.unlink()
        tmp = labels.with_name(".labels.csv.partial")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["video", "label", "split"])
            writer.writeheader()
            writer.writerows({"video": c.video, "label": c.label, "split": c.split} for c in clips)
        os.replace(tmp, labels)
    return [landing / b for b in plan]


def _write_job(job) -> int:
    path, clip, render_short_side = job
    return write_clip(path, clip, render_short_side=render_short_side)
