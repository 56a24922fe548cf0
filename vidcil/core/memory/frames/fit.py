"""A shard that fits any allowance: keyframes, then quality, then resolution (the default policy).

Per video, the levers in order: the keyframe threshold (``threshold``, the mission's rule — a frame
is kept when its L2 distance to the last kept one is at least that — raised until the shard fits;
the keyframes are thinned evenly to at most ``frames``), then the encoder quality (x264
CRF along ``crf``), then the resolution (the short side halved down to ``min_side``). A rung is
taken as soon as it holds ``min_frames`` frames (motion needs two); when none does, the rung with the
most frames. Only an allowance below a single tiny frame (a few hundred bytes: the container's own
header) gets nothing.

``frames`` also sets how many videos a class keeps (the memory store asks :meth:`wish`): a class's
share is split over as many videos as fit at ``frames`` frames each — ``frames: 1`` keeps many
videos of one frame, ``frames: 8`` few videos of eight. By default (``None``) it is the number of
frames the model samples per clip (``model.num_segments``, given as ``clip_frames``): a shard thinned
to fewer frames is replayed with each one held over the frames dropped, and a motion model
(``model.input: diff``) then sees those frame differences at zero. Measured on the random-dot stream (seed 0, batch-0 model,
150 kB; README "Memory fidelity"): the champion is right on 0.35 of its own exemplars replayed from
4-frame shards (0.97 on the same videos in full) and on 1.00 of them from 8-frame shards.
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np
from pydantic import Field

from vidcil.core.memory.frames import DEFAULT_CRF, FRAME_POLICIES, ShardPlan, shrink
from vidcil.core.memory.frames.keyframes import select_keyframes
from vidcil.core.registry import PluginConfig


class FitConfig(PluginConfig):
    kind: Literal["fit"] = "fit"
    # RMS pixel difference in [0, 1] that makes a keyframe (the floor). 0.06 until 2026-12-07: a slowly moving
    # digit was held too long (the champion right on 0.90 of its exemplars vs 1.00 at 0.02; README "Memory fidelity")
    threshold: float = Field(0.02, ge=0)
    frames: int | None = Field(None, ge=1)  # most frames per exemplar video (fewer: more videos per class);
    # None: the frames the model samples per clip (model.num_segments)
    min_frames: int = Field(2, ge=1)  # quality and resolution give way before a video drops below this
    max_threshold: float = Field(0.5, gt=0)  # the threshold is raised up to this to fit
    steps: int = Field(7, ge=1)  # bisection steps of the threshold
    crf: list[int] = Field(default_factory=lambda: [DEFAULT_CRF, 30, 40], min_length=1)  # x264 quality ladder
    min_side: int = Field(16, ge=8)  # the resolution is halved down to this short side at most


def thin(keys: list[int], most: int) -> list[int]:
    """At most ``most`` of ``keys``, evenly spread, the first kept."""
    if len(keys) <= most:
        return list(keys)
    picks = sorted({int(i * len(keys) / most) for i in range(most)})
    return [keys[i] for i in picks]


@FRAME_POLICIES.register(FitConfig)
class FitBudget:
    adapts = True

    def __init__(self, threshold: float = 0.02, frames: int | None = None, min_frames: int = 2, max_threshold: float = 0.5,
                 steps: int = 7, crf: list[int] | None = None, min_side: int = 16, *,
                 encoded_size: Callable[..., int], clip_frames: int = 8):
        frames = frames or clip_frames  # clip_frames: what the model samples per clip (model.num_segments)
        self.threshold, self.frames, self.min_frames = threshold, frames, min(min_frames, frames)
        self.max_threshold, self.steps = max_threshold, steps
        self.crf, self.min_side, self.encoded_size = list(crf or [DEFAULT_CRF, 30, 40]), min_side, encoded_size

    def rungs(self, frames: np.ndarray) -> list[tuple[int | None, int]]:
        """(side, crf) from the biggest shard to the smallest: quality first, then resolution."""
        side, sides = min(frames.shape[1:3]), [None]
        while side // 2 >= self.min_side:
            side //= 2
            sides.append(side)
        return [(s, c) for s in sides for c in self.crf]

    def wish(self, frames: np.ndarray) -> int:
        """Bytes of this video's shard when nothing has to give: its keyframes (at most ``frames``) at
        the working resolution and the best quality."""
        keys = thin(select_keyframes(frames, self.threshold), self.frames)
        return self.encoded_size(frames[keys], crf=self.crf[0])

    def __call__(self, frames: np.ndarray, allowance: int) -> ShardPlan:
        keyframes: dict[float, list[int]] = {}  # by threshold: the same for every rung

        def at(threshold: float) -> list[int]:
            if threshold not in keyframes:
                keyframes[threshold] = thin(select_keyframes(frames, threshold), self.frames)
            return keyframes[threshold]

        enough = min(self.min_frames, len(at(self.threshold)))
        best = ShardPlan()
        for side, crf in self.rungs(frames):
            keys = self._most_frames(shrink(frames, side), at, crf, allowance)
            if len(keys) > len(best.keys):
                best = ShardPlan(keys, side, crf)
            if len(best.keys) >= enough:
                break
        return best

    def _most_frames(self, stored: np.ndarray, at: Callable[[float], list[int]], crf: int,
                     allowance: int) -> list[int]:
        """The most keyframes (``at(threshold)``, at most ``frames``) whose shard from ``stored`` fits."""
        sizes: dict[tuple[int, ...], int] = {}

        def fits(keys: list[int]) -> bool:
            k = tuple(keys)
            if k not in sizes:
                sizes[k] = self.encoded_size(stored[list(k)], crf=crf)
            return sizes[k] <= allowance

        if not fits([0]):
            return []
        lo, hi = self.threshold, max(self.threshold, self.max_threshold)
        if fits(at(lo)):
            return at(lo)
        best = at(hi)
        if not fits(best):  # even the fewest keyframes are too big: as many of them as fit
            n = 1
            while n < len(best) and fits(thin(best, n + 1)):
                n += 1
            return thin(best, n)
        for _ in range(self.steps):
            mid = (lo + hi) / 2
            keys = at(mid)
            if fits(keys):
                hi, best = mid, keys
            else:
                lo = mid
        # Keyframe counts jump between thresholds (a steady motion: 16, 8, 5, ... frames): the keyframes
        # just below the threshold found, thinned, may fit one more frame or two.
        denser = at(lo)
        while len(best) < len(denser) and fits(thin(denser, len(best) + 1)):
            best = thin(denser, len(best) + 1)
        return best
