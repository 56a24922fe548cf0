"""Frame policies: which frames of an exemplar video the memory keeps. One module per kind,
registered in :data:`FRAME_POLICIES`.

``policy(frames, allowance) -> indices``: ``frames`` uint8 ``[F, h, w, 3]`` at the working
resolution, ``allowance`` the bytes this video may take (policies that do not adapt ignore it);
returns the kept frame indices in temporal order (``[]``: the video does not fit). Policies that
measure bytes get ``encoded_size(frames) -> bytes`` from the memory store, which encodes shards.

Add one: ``vidcil/core/memory/frames/<kind>.py`` with a config and ``@FRAME_POLICIES.register(<Config>)``;
``memory.frames: {kind: <kind>}``.
"""

from vidcil.core.registry import Registry

FRAME_POLICIES = Registry("frame policy", __name__)
