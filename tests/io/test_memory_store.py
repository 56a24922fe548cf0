import json
import logging

import numpy as np
import pandas as pd
import pytest

from tests.conftest import moving_square
from vidcil.io.clips import ClipDataset, ClipRef, DirectDecode, hold_keyframes
from vidcil.io.transforms import clip_transform
from vidcil.io.video import decode_video, write_video
from vidcil.core.memory.frames.adaptive import AdaptiveThreshold
from vidcil.core.memory.frames.keyframes import select_keyframes
from vidcil.core.memory.frames.uniform import UniformFrames
from vidcil.core.memory.frames import shrink
from vidcil.io.memory_store import (KeyframeMemory, build_memory, describe_choice, empty_memory, frame_policy,
                                    per_class_summary, shard_size)


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
    # two classes, room for two exemplars each (and the index), not for three
    budget = 2 * (2 * biggest + smallest * 9 // 10)
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
    """A frame policy that does not adapt (fixed keyframes) refuses; ``fit`` never does (below)."""
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
        "shard": None, "bytes": None, "side": 32, "crf": 18, "logits": None, "span": 12}


def test_logits_go_into_the_memory_with_their_exemplar_and_stay_with_it(tmp_path):
    source = _videos(tmp_path, 3)
    first = _ranked([("a", 0.9), ("a", 0.8)]).assign(logits=[[2.12345, -1.0], "[0.5, 0.25]"])  # a list, or CSV's JSON
    one = build_memory(empty_memory(tmp_path / "m", 0, 0.05), first, source, tmp_path / "m/b1",
                       budget_bytes=10**6, threshold=0.05, batches=("b0",))
    assert one.entries.logits.tolist() == [(2.123, -1.0), (0.5, 0.25)]  # rounded: they cost index bytes
    later = _ranked([("b", 0.0), ("b", 0.0), ("b", 0.7)]).iloc[2:].assign(logits=[[0.1, 0.2, 3.0]])
    two = build_memory(one, later, source, tmp_path / "m/b2", budget_bytes=10**6, threshold=0.05, batches=("b0", "b1"))
    stored = {e.video: e.logits for e in KeyframeMemory.load(tmp_path / "m/b2").entries.itertuples()}
    assert stored == {"v0.mp4": (2.123, -1.0), "v1.mp4": (0.5, 0.25), "v2.mp4": (0.1, 0.2, 3.0)}  # old ones kept
    refs = two.refs({"a": 0, "b": 1})
    assert [(r.label, r.logits) for r in refs] == [(0, (2.123, -1.0)), (0, (0.5, 0.25)), (1, (0.1, 0.2, 3.0))]
    assert all(r.path.is_file() for r in refs)
    plain = build_memory(empty_memory(tmp_path / "p", 0, 0.05), _ranked([("a", 0.9)]), source, tmp_path / "p/b1",
                         budget_bytes=10**6, threshold=0.05, batches=("b0",))
    assert plain.refs({"a": 0})[0].logits is None  # no logit replay: nothing stored


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
    one_frame, all_jumps = shard_size(frames[:1]), shard_size(frames[jumps])  # as the memory stores shards
    fitted = AdaptiveThreshold(encoded_size=shard_size)
    roomy, tight = fitted(frames, all_jumps + 10), fitted(frames, (one_frame + all_jumps) // 2)
    assert roomy == jumps  # room for all of them: the lowest threshold that is not noise
    assert 1 <= len(tight) < len(roomy)
    assert shard_size(frames[tight]) <= (one_frame + all_jumps) // 2
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


# -- fit: the default frame policy, which adapts so that any budget fits ------------------------

def _busy(n_frames=16, size=64, seed=0):
    """uint8 frames of a textured pattern that moves every frame: every frame is a keyframe."""
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 255, (size // 4, size // 4, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    return np.stack([np.roll(base, 2 * t, axis=1) for t in range(n_frames)])


def _busy_videos(tmp_path, n):
    folder = tmp_path / "busy"
    for i in range(n):
        write_video(folder / f"v{i}.mp4", _busy(seed=i))
    return lambda batch_id, video: decode_video(folder / video)


def test_fit_gives_way_keyframes_then_quality_then_resolution():
    frames = _busy()
    fit = frame_policy({"kind": "fit", "frames": 4})
    assert fit.adapts and fit.rungs(frames)[:4] == [(None, 18), (None, 30), (None, 40), (32, 18)]
    roomy = fit(frames, 10**6)
    assert roomy.keys == [0, 4, 8, 12] and roomy.side is None and roomy.crf == 18  # 4 keyframes, as they are
    one_frame = shard_size(frames[:1])
    tight = fit(frames, one_frame)  # one frame's worth at full quality: two frames at a lower quality or size
    assert len(tight.keys) >= 2 and (tight.crf > 18 or tight.side is not None)
    assert shard_size(shrink(frames[tight.keys], tight.side), tight.crf) <= one_frame
    tiny = fit(frames, one_frame * 2 // 3)  # below two full-size frames at any quality: a smaller picture
    assert len(tiny.keys) >= 2 and tiny.side is not None
    assert shard_size(shrink(frames[tiny.keys], tiny.side), tiny.crf) <= one_frame * 2 // 3
    assert not fit(frames, 100)  # below an mp4's own header: nothing


def test_fit_keeps_as_many_frames_per_video_as_the_model_samples_by_default():
    frames = _busy()  # every frame changes: all are keyframes
    assert len(frame_policy({"kind": "fit"}, clip_frames=8)(frames, 10**6).keys) == 8
    assert frame_policy({"kind": "fit"}, clip_frames=6)(frames, 10**6).keys == [0, 2, 5, 8, 10, 13]
    assert len(frame_policy({"kind": "fit", "frames": 3}, clip_frames=8)(frames, 10**6).keys) == 3  # given: as given


def test_a_fit_memory_never_refuses_and_says_what_it_chose(tmp_path, caplog):
    source = _busy_videos(tmp_path, 6)
    one_frame = shard_size(source("b0", "v0.mp4")[:1])
    ranked = _ranked([("a", 0.9), ("a", 0.8), ("b", 0.7), ("b", 0.6), ("c", 0.5), ("c", 0.4)])
    budget = 3 * one_frame  # a third of it per class is less than one full-size frame of any video
    fit = frame_policy({"kind": "fit"})
    with pytest.raises(ValueError):  # what fixed keyframes do with it
        build_memory(empty_memory(tmp_path / "m", 0, 0.05), ranked, source, tmp_path / "m/fixed",
                     budget_bytes=budget, threshold=0.05, batches=("b0",))
    mem = build_memory(empty_memory(tmp_path / "m", 0, 0.05), ranked, source, tmp_path / "m/b1",
                       budget_bytes=budget, threshold=0.05, batches=("b0",), frame_policy=fit)
    assert mem.bytes_on_disk <= budget and sorted(set(mem.entries.label)) == ["a", "b", "c"]
    chosen = per_class_summary(mem.entries)
    assert all(c["videos"] >= 1 and c["bytes"] < one_frame and (c["crf"] != [18] or c["sides"] != [64])
               for c in chosen.values()), chosen
    assert decode_video(mem.shard_path(mem.entries.iloc[0])).shape[0] == len(mem.entries.keyframes.iloc[0])
    lines = describe_choice(mem)
    assert len(lines) == 3 and lines[0].startswith("a: 1 video(s), ") and " px, crf " in lines[0]

    # A budget below the smallest possible shard: no class can be kept; still no refusal, but said.
    with caplog.at_level(logging.WARNING):
        none = build_memory(empty_memory(tmp_path / "m", 0, 0.05), ranked, source, tmp_path / "m/b2",
                            budget_bytes=3000, threshold=0.05, batches=("b0",), frame_policy=fit)
    assert len(none.entries) == 0 and sorted(none.unrepresented) == ["a", "b", "c"]
    assert "no exemplar of a, b, c" in caplog.text and "raise memory.budget_bytes" in caplog.text
    assert KeyframeMemory.load(tmp_path / "m/b2").unrepresented == none.unrepresented
    assert describe_choice(none)[0].startswith("a: no exemplar (its share of 500 B is below the smallest shard)")


def test_fit_frames_trade_videos_per_class_for_frames_per_video(tmp_path):
    source = _busy_videos(tmp_path, 8)
    ranked = _ranked([("a", 1 - i / 10) for i in range(8)])
    budget = 8 * shard_size(source("b0", "v0.mp4")[:1])
    kept = {}
    for frames in (1, 4):
        mem = build_memory(empty_memory(tmp_path / "m", 0, 0.05), ranked, source, tmp_path / f"m/f{frames}",
                           budget_bytes=budget, threshold=0.05, batches=("b0",),
                           frame_policy=frame_policy({"kind": "fit", "frames": frames}))
        assert mem.bytes_on_disk <= budget
        kept[frames] = (len(mem.entries), max(len(k) for k in mem.entries.keyframes))
    assert kept[1][0] > kept[4][0] and kept[1][1] == 1 and kept[4][1] == 4, kept  # many short vs few long


def test_an_old_class_that_outgrows_its_share_keeps_its_best_exemplar_made_smaller(tmp_path):
    source = _busy_videos(tmp_path, 4)
    fit = frame_policy({"kind": "fit"})
    first = build_memory(empty_memory(tmp_path / "m", 0, 0.05), _ranked([("a", 0.9), ("a", 0.8)]), source,
                         tmp_path / "m/b1", budget_bytes=10**6, threshold=0.05, batches=("b0",), frame_policy=fit)
    smallest = int(first.entries.bytes.min())
    budget = 3 * (smallest // 2) + 300 + 3 * 400  # three classes now: a share is half the smallest old exemplar
    new = _ranked([("a", 0)] * 2 + [("b", 0.7), ("c", 0.6)]).iloc[2:]
    second = build_memory(first, new, source, tmp_path / "m/b2", budget_bytes=budget, threshold=0.05,
                          batches=("b0", "b1"), frame_policy=fit)
    a = second.entries[second.entries.label == "a"]
    assert a.confidence.tolist() == [0.9] and int(a.bytes.iloc[0]) < smallest  # re-encoded, not lost
    assert set(a.keyframes.iloc[0]) <= set(first.entries.keyframes.iloc[0])  # frames of the video it had
    assert second.bytes_on_disk <= budget and sorted(set(second.entries.label)) == ["a", "b", "c"]


def test_a_smaller_shard_trains_at_the_model_input_size():
    from vidcil.io.transforms import clip_transform

    small = shrink(_busy(4, 64), 16)
    assert small.shape == (4, 16, 16, 3)
    clip = clip_transform(8, 32, train=True)(small, np.random.default_rng(0))
    assert tuple(clip.shape) == (8, 3, 32, 32)


def test_a_shard_is_replayed_on_its_videos_timeline_each_keyframe_held_until_the_next(tmp_path):
    """The keyframe rule keeps a frame when it differs from the last kept one: the frames in between are
    (nearly) that keyframe, so the model samples a memory clip as it sampled the video itself."""
    folder = tmp_path / "batch"
    write_video(folder / "v0.mp4", moving_square(16, size=48, jumps=(2, 3, 12)))
    source = lambda batch_id, video: decode_video(folder / video)  # noqa: E731
    mem = build_memory(empty_memory(tmp_path / "m", 0, 0.05), _ranked([("a", 0.9)]), source, tmp_path / "m/b1",
                       budget_bytes=10**6, threshold=0.05, batches=("b0",))
    assert mem.entries.keyframes.tolist() == [[0, 2, 3, 12]] and mem.entries.span.tolist() == [16]
    ref, = KeyframeMemory.load(tmp_path / "m/b1").refs({"a": 0})
    assert (ref.keyframes, ref.span) == ((0, 2, 3, 12), 16)
    transform, decode = clip_transform(8, 48, train=False, short_side=48), DirectDecode(short_side=48)
    replayed, = ClipDataset([ref], transform, decode)[0][:1]
    full, = ClipDataset([ClipRef(folder / "v0.mp4", 0)], transform, decode)[0][:1]
    evenly, = ClipDataset([ClipRef(ref.path, 0)], transform, decode)[0][:1]  # positions unknown (old indexes)
    assert (replayed - full).abs().mean() < 0.02 < (evenly - full).abs().mean()


def test_hold_keyframes_maps_the_timeline_to_the_latest_keyframe():
    frames = np.arange(4)[:, None]
    assert hold_keyframes(frames, (0, 5, 6, 7), 10)[:, 0].tolist() == [0, 0, 0, 0, 0, 1, 2, 3, 3, 3]
    assert hold_keyframes(frames, (2, 3, 4, 5), 6)[:, 0].tolist() == [0, 0, 0, 1, 2, 3]  # before the first: the first
    assert hold_keyframes(frames, None, None) is frames and hold_keyframes(frames, (0, 1), 8) is frames  # unknown / mismatched
