"""The input path as ``params.yaml`` configures it: the frame cache, the transforms, the loaders.

Every step that reads video (validation's probe, exemplar scoring, keyframes, training,
evaluation, the input example) and the benchmark go through these, so a clip is decoded once and
seen the same way everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vidcil.config import Params
from vidcil.io.cache import FrameCache

if TYPE_CHECKING:  # torch's: imported when a dataset is made (validation and keyframes start without torch)
    from vidcil.io.clips import ClipDataset, ClipRef


def frame_cache(params: Params) -> FrameCache:
    d = params.data
    return FrameCache(params.paths.cache, d.short_side, d.cache_max_frames, d.cache_max_bytes)


def clip_dataset(params: Params, refs: list[ClipRef], *, train: bool, num_segments: int | None = None,
                 cache: FrameCache | None = None) -> ClipDataset:
    """Training: TSN sampling + random resized crop; evaluation: middle frames + centre crop."""
    from vidcil.io.clips import ClipDataset
    from vidcil.io.transforms import clip_transform

    d = params.data
    transform = clip_transform(num_segments or params.model.num_segments, d.input_size, train=train,
                               short_side=d.short_side, crop_scale=d.crop_scale, crop_ratio=d.crop_ratio,
                               flip=d.flip)
    return ClipDataset(refs, transform, cache or frame_cache(params))


def loader_options(params: Params) -> dict:
    """Keyword arguments for ``predict_proba`` / ``embed``: the DataLoader workers."""
    return {"num_workers": params.data.num_workers}


def train_options(params: Params) -> dict:
    """Keyword arguments for ``train``: workers, pinned memory and the GPU switches."""
    t = params.train
    return loader_options(params) | {"pin_memory": params.data.pin_memory, "mixed_precision": t.mixed_precision,
                                     "channels_last": t.channels_last, "compile": t.compile,
                                     "sync_batchnorm": t.sync_batchnorm}
