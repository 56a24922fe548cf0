"""Frame policies: which frames of an exemplar video the memory keeps, and how. One module per kind,
registered in :data:`FRAME_POLICIES`.

``policy(frames, allowance) -> indices | ShardPlan``: ``frames`` uint8 ``[F, h, w, 3]`` at the
working resolution, ``allowance`` the bytes this video may take (policies that do not adapt ignore
it); returns the kept frame indices in temporal order (``[]``: the video does not fit), or a
:class:`ShardPlan` that also chooses the shard's resolution and encoder quality. Policies that
measure bytes get ``encoded_size(frames, crf) -> bytes`` from the memory store, which encodes shards.
A policy with ``adapts = True`` always finds a shard that fits any allowance above the smallest
possible one, so the memory never refuses a batch for its budget.

Add one: ``vidcil/core/memory/frames/<kind>.py`` with a config and ``@FRAME_POLICIES.register(<Config>)``;
``memory.frames: {kind: <kind>}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vidcil.core.registry import Registry

FRAME_POLICIES = Registry("frame policy", __name__)

DEFAULT_CRF = 18  # x264 quality of a shard unless a policy chooses another (lower: better, bigger)


@dataclass(frozen=True)
class ShardPlan:
    """What a shard holds: frame ``keys`` of the video, stored at short side ``side`` (None: the
    working resolution) with x264 quality ``crf``."""

    keys: list[int] = field(default_factory=list)
    side: int | None = None
    crf: int = DEFAULT_CRF

    def __bool__(self) -> bool:
        return bool(self.keys)


def as_plan(chosen) -> ShardPlan:
    """A policy's answer (indices or a plan) as a :class:`ShardPlan`."""
    return chosen if isinstance(chosen, ShardPlan) else ShardPlan([int(k) for k in chosen])


def shrink(frames: np.ndarray, side: int | None) -> np.ndarray:
    """``frames`` (uint8 ``[F, h, w, 3]``) with short side ``side`` (never enlarged; even sizes, as
    H.264 yuv420p needs); area-averaged, deterministic."""
    f, h, w, _ = frames.shape
    if side is None or side >= min(h, w):
        return frames
    scale = side / min(h, w)
    nh, nw = max(2, round(h * scale) // 2 * 2), max(2, round(w * scale) // 2 * 2)
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(nh, nw), mode="area")
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
