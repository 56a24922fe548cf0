"""The clip transforms, as small composable steps (the mmaction2 habit).

``SampleFrames -> RandomResizedCrop | CenterCrop -> [Flip] -> ToTensor``; normalization is the
model's first operation (its ``mean`` / ``std`` buffers), so a served model takes clips in [0, 1].
Each step takes and returns a :class:`Clip`; randomness comes from the ``rng`` handed to the
pipeline, one per sample, so a seeded run draws the same crops whatever the number of workers.
The same crop (and flip) applies to every frame of a clip: motion stays where it was.

Frames arrive at the working resolution (the cache's short side); full videos and keyframe
shards (fewer frames than T, order kept) go through the same steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Clip:
    """``frames``: uint8 ``[T, H, W, 3]`` before :class:`ToTensor`, float ``[T, 3, S, S]`` after."""

    frames: np.ndarray | torch.Tensor
    rng: np.random.Generator | None = None


def sample_indices(
    n_frames: int, num_segments: int, *, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Indices of ``num_segments`` frames out of ``n_frames``, in temporal order.

    ``n_frames >= num_segments``: the video is cut into equal segments and one frame is taken from
    each, at random in training (TSN) and from the middle otherwise. Fewer frames than segments (a
    keyframe memory): every frame is used and repeated as evenly as possible, order kept.
    """
    if n_frames < 1:
        raise ValueError("a clip needs at least one frame")
    if n_frames < num_segments:
        return np.floor(np.arange(num_segments) * n_frames / num_segments).astype(np.int64)
    edges = np.linspace(0, n_frames, num_segments + 1)
    if train:
        rng = rng or np.random.default_rng()
        picks = edges[:-1] + rng.random(num_segments) * (edges[1:] - edges[:-1])
    else:
        picks = (edges[:-1] + edges[1:]) / 2
    return np.minimum(np.floor(picks).astype(np.int64), n_frames - 1)


@dataclass(frozen=True)
class SampleFrames:
    """TSN: one frame per segment (random in training, the middle otherwise); copies only those."""

    num_segments: int
    train: bool

    def __call__(self, clip: Clip) -> Clip:
        idx = sample_indices(len(clip.frames), self.num_segments, train=self.train, rng=clip.rng)
        return Clip(np.asarray(clip.frames[idx]), clip.rng)


def _resize(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 ``[T, h, w, 3]`` -> float ``[T, 3, size, size]`` in [0, 1] (antialiased when shrinking)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != (size, size):
        shrink = x.shape[-1] > size or x.shape[-2] > size
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return x.clamp_(0.0, 1.0)


@dataclass(frozen=True)
class RandomResizedCrop:
    """A crop of ``scale`` of the frame's area and ``ratio`` aspect (log-uniform), resized to ``size``.

    Falls back to the largest centred crop of the nearest allowed ratio when ten draws do not fit.
    """

    size: int
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (0.75, 4 / 3)

    def window(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
        aspect = min(max(w / h, self.ratio[0]), self.ratio[1])
        cw, ch = (w, round(w / aspect)) if w / h < aspect else (round(h * aspect), h)
        return (h - ch) // 2, (w - cw) // 2, min(ch, h), min(cw, w)

    def __call__(self, clip: Clip) -> Clip:
        rng = clip.rng or np.random.default_rng()
        t, h, w = clip.frames.shape[:3]
        y, x, ch, cw = self.window(h, w, rng)
        return Clip(_resize(clip.frames[:, y : y + ch, x : x + cw], self.size), rng)


@dataclass(frozen=True)
class CenterCrop:
    """The centred square of side ``fraction`` x the short side, resized to ``size`` (evaluation)."""

    size: int
    fraction: float = 1.0

    def __call__(self, clip: Clip) -> Clip:
        h, w = clip.frames.shape[1:3]
        side = max(1, min(h, w, round(min(h, w) * self.fraction)))
        y, x = (h - side) // 2, (w - side) // 2
        return Clip(_resize(clip.frames[:, y : y + side, x : x + side], self.size), clip.rng)


@dataclass(frozen=True)
class Flip:
    """Horizontal flip of the whole clip with probability ``p`` (only when a batch allows it)."""

    p: float = 0.5

    def __call__(self, clip: Clip) -> Clip:
        rng = clip.rng or np.random.default_rng()
        frames = clip.frames
        if rng.random() < self.p:
            frames = frames.flip(-1) if isinstance(frames, torch.Tensor) else frames[:, :, ::-1]
        return Clip(frames, rng)


@dataclass(frozen=True)
class Compose:
    steps: tuple = field(default_factory=tuple)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        """uint8 ``[F, H, W, 3]`` (any F >= 1, any size) -> float ``[T, 3, S, S]`` in [0, 1]."""
        clip = Clip(frames, rng)
        for step in self.steps:
            clip = step(clip)
        return clip.frames


def clip_transform(
    num_segments: int, input_size: int, *, train: bool, short_side: int | None = None,
    crop_scale: tuple[float, float] = (0.5, 1.0), crop_ratio: tuple[float, float] = (0.75, 4 / 3),
    flip: bool = False,
) -> Compose:
    """Training: TSN sampling + random resized crop (+ flip if allowed); evaluation: middle frames +
    centre crop of ``input_size / short_side`` of the short side."""
    if train:
        steps = [SampleFrames(num_segments, True), RandomResizedCrop(input_size, crop_scale, crop_ratio)]
        return Compose(tuple(steps + ([Flip()] if flip else [])))
    fraction = min(1.0, input_size / short_side) if short_side else 1.0
    return Compose((SampleFrames(num_segments, False), CenterCrop(input_size, fraction)))
