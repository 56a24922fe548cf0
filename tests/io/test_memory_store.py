import json

import pandas as pd
import pytest

from tests.conftest import moving_square
from vidcil.io.video import decode_video, write_video
from vidcil.core.memory.frames.adaptive import AdaptiveThreshold
from vidcil.core.memory.frames.keyframes import select_keyframes
from vidcil.core.memory.frames.uniform import UniformFrames
from vidcil.io.memory_store import KeyframeMemory, build_memory, empty_memory, shard_size


def _videos(tmp_path, n):
    folder = tmp_path / "batch"
    for i in range(n):
        write_video(folder / f"v{i}.mp4", moving_square(12, size=32, jumps=(3 + i % 3, 9)))
    return lambda batch_id, video: decode_video(folder / video)  # the frames, as the cache gives them


def _ranked(labels_conf):
    return pd.DataFrame([{"batch_id": "b0", "video": f"v{i}.mp4", "label": lab, "confidence": c}
                         for i, (lab, c) in enumerate(labels_conf)])


def test_memory_holds_keyframe_shards_within_budget_and_bytes_are_on_disk(tmp_path):
    source = _videos(tmp_path, 4)
    ranked = _ranked([("a", 0.9), ("a", 0.8), ("b", 0.7), ("b", 0.6)])
    mem = build_memory(empty_memory(tmp_path / "m", 10**6, 0.05), ranked, source, tmp_path / "m/b1",
                       budget_bytes=10**6, threshold=0.05, batches=("b0",))
    assert len(mem.entries) == 4
    assert all(k == [0, 3 + i % 3, 9] for i, k in zip(range(4), mem.entries.keyframes))
    on_disk = sum(p.stat().st_size for p in (tmp_path / "m/b1").rglob("*") if p.is_file())
    assert mem.bytes_on_disk == on_disk  # one shard per video + the index, nothing else
    assert len(list((tmp_path / "m/b1/shards").iterdir())) == 4
    assert decode_video(mem.shard_path(mem.entries.iloc[0])).shape[0] == 3  # keyframes only
    assert KeyframeMemory.load(tmp_path / "m/b1").content_hash == mem.content_hash


def test_new_classes_shrink_old_shares_least_confident_first(tmp_path):
    source = _videos(tmp_path, 6)
    first = build_memory(empty_memory(tmp_path / "m", 0, 0.05), _ranked([("a", 0.9), ("a", 0.5), ("a", 0.7)]),
                         source, tmp_path / "m/b1", budget_bytes=10**6, threshold=0.05, batches=("b0",))
    biggest, smallest = int(first.entries.bytes.max()), int(first.entries.bytes.min())
    budget = 2 * (2 * biggest + smallest // 2)  # two classes, room for two exemplars each
    new = _ranked([("b", 0.0)] * 3 + [("b", 0.8), ("b", 0.6), ("b", 0.4)]).iloc[3:]
    second = build_memory(first, new, source, tmp_path / "m/b2", budget_bytes=budget, threshold=0.05,
                          batches=("b0", "b1"))
    by_class = second.entries.groupby("label").confidence.apply(list).to_dict()
    assert by_class == {"a": [0.9, 0.7], "b": [0.8, 0.6]}  # the least confident of each went
    assert second.bytes_on_disk <= budget
    # The earlier version is untouched (immutable), and a version is never overwritten.
    assert KeyframeMemory.load(tmp_path / "m/b1").entries.confidence.tolist() == [0.9, 0.7, 0.5]
    with pytest.raises(FileExistsError):
        build_memory(first, new, source, tmp_path / "m/b2", budget_bytes=budget, threshold=0.05, batches=())


def test_a_budget_too_small_for_one_exemplar_per_class_fails_and_writes_nothing(tmp_path):
    source = _videos(tmp_path, 2)
    with pytest.raises(ValueError, match="raise memory.budget_bytes"):
        build_memory(empty_memory(tmp_path / "m", 0, 0.05), _ranked([("a", 0.9), ("b", 0.8)]), source,
                     tmp_path / "m/b1", budget_bytes=500, threshold=0.05, batches=("b0",))
    assert not (tmp_path / "m/b1").exists()
    assert not any(p.name.endswith(".partial") for p in (tmp_path / "m").iterdir())


def test_index_records_provenance(tmp_path):
    source = _videos(tmp_path, 1)
    build_memory(empty_memory(tmp_path / "m", 0, 0.05), _ranked([("a", 0.9)]), source, tmp_path / "m/b1",
                 budget_bytes=10**6, threshold=0.05, batches=("b0",))
    index = json.loads((tmp_path / "m/b1/index.json").read_text())
    assert index["batches"] == ["b0"] and index["threshold"] == 0.05
    assert index["entries"][0] | {"shard": None, "bytes": None} == {
        "label": "a", "batch_id": "b0", "video": "v0.mp4", "confidence": 0.9, "priority": 0.9, "keyframes": [0, 3, 9],
        "shard": None, "bytes": None}


def test_priority_orders_exemplars_instead_of_confidence_when_given(tmp_path):
    source = _videos(tmp_path, 3)
    ranked = _ranked([("a", 0.9), ("a", 0.8), ("a", 0.7)]).assign(priority=[1.0, 3.0, 2.0])  # e.g. herding
    one = build_memory(empty_memory(tmp_path / "m", 0, 0.05), ranked, source, tmp_path / "m/b1",
                       budget_bytes=10**6, threshold=0.05, batches=("b0",))
    assert one.entries.video.tolist() == ["v1.mp4", "v2.mp4", "v0.mp4"]  # by priority, not confidence
    smallest_two = sorted(one.entries.bytes)[:2]
    squeezed = build_memory(one, ranked.iloc[:0], source, tmp_path / "m/b2", budget_bytes=max(smallest_two) + 600,
                            threshold=0.05, batches=("b0",))
    assert squeezed.entries.video.tolist() == ["v1.mp4"]  # the highest priority stays


def test_frame_policies_uniform_and_adaptive(tmp_path):
    frames = moving_square(16, size=48, jumps=(4, 8, 12))
    assert UniformFrames(8)(frames, 0) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert UniformFrames(8)(frames[:5], 0) == [0, 1, 2, 3, 4]  # fewer frames than asked: all of them
    jumps = [0, 4, 8, 12]  # every frame that differs visibly from the one before
    one_frame = write_video(tmp_path / "one.mp4", frames[:1])
    all_jumps = write_video(tmp_path / "all.mp4", frames[jumps])
    fitted = AdaptiveThreshold(encoded_size=shard_size)
    roomy, tight = fitted(frames, all_jumps + 10), fitted(frames, (one_frame + all_jumps) // 2)
    assert roomy == jumps  # room for all of them: the lowest threshold that is not noise
    assert 1 <= len(tight) < len(roomy)
    assert write_video(tmp_path / "tight.mp4", frames[tight]) <= (one_frame + all_jumps) // 2
    assert fitted(frames, one_frame - 1) == []  # not even one frame fits: the video is skipped


def test_a_frame_policy_shapes_what_the_memory_stores(tmp_path):
    source = _videos(tmp_path, 2)
    mem = build_memory(empty_memory(tmp_path / "m", 0, 0.05), _ranked([("a", 0.9), ("b", 0.8)]), source,
                       tmp_path / "m/b1", budget_bytes=10**6, threshold=0.05, batches=("b0",),
                       frame_policy=UniformFrames(4))
    assert mem.entries.keyframes.tolist() == [[1, 4, 7, 10], [1, 4, 7, 10]]
    assert decode_video(mem.shard_path(mem.entries.iloc[0])).shape[0] == 4


def test_an_adaptive_memory_keeps_a_class_whose_equal_split_is_too_small_for_any_video(tmp_path):
    source = _videos(tmp_path, 6)
    one_frame = write_video(tmp_path / "one.mp4", source("b0", "v0.mp4")[:1])
    ranked = _ranked([("a", 0.9 - i / 10) for i in range(6)])
    budget = one_frame * 3  # a sixth of it per candidate cannot hold a single frame
    mem = build_memory(empty_memory(tmp_path / "m", 0, 0.05), ranked, source, tmp_path / "m/b1",
                       budget_bytes=budget, threshold=0.05, batches=("b0",), frame_policy=AdaptiveThreshold(encoded_size=shard_size))
    assert mem.entries.video.tolist() == ["v0.mp4"]  # the most confident video, fitted to the whole share
    assert mem.bytes_on_disk <= budget
