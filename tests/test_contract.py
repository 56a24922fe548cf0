import pytest

from tests.conftest import moving_square
from vidcil.data.contract import BatchRejected, build_manifest, content_hash
from vidcil.data.video import write_video


def _batch(tmp_path, rows: str):
    (tmp_path / "labels.csv").write_text(rows)
    return tmp_path


def test_good_rows_are_probed_and_bad_rows_quarantined_with_reasons(tmp_path):
    write_video(tmp_path / "clips/a.mp4", moving_square(8, size=32))
    (tmp_path / "clips/fake.mp4").write_text("not a video")
    batch = _batch(tmp_path, "video,label,split,camera\n"
                             "clips/a.mp4,push,train,cam1\n"
                             "clips/missing.mp4,push,train,cam1\n"
                             "clips/fake.mp4,push,test,cam2\n"
                             "clips/a.mp4,push,validation,cam1\n"
                             "clips/a.mp4, ,test,cam1\n"
                             "../outside.mp4,push,test,cam1\n")
    m = build_manifest(batch)
    assert m.accepted[["video", "frames", "width", "codec", "camera"]].values.tolist() == [
        ["clips/a.mp4", 8, 32, "h264", "cam1"]]  # extra columns are kept
    reasons = dict(zip(m.quarantined.row, m.quarantined.reason))
    assert "row 3: video 'clips/missing.mp4' does not exist" in reasons[3]
    assert "clips/fake.mp4" in reasons[4] and "re-encode" in reasons[4]
    assert "split 'validation'" in reasons[5]
    assert "empty label" in reasons[6]
    assert "outside the batch folder" in reasons[7]


def test_missing_labels_or_columns_reject_the_batch(tmp_path):
    with pytest.raises(BatchRejected, match="labels.csv: missing"):
        build_manifest(tmp_path)
    _batch(tmp_path, "file,label,split\na.mp4,x,train\n")
    with pytest.raises(BatchRejected, match="missing column.*video"):
        build_manifest(tmp_path)
    _batch(tmp_path, "video,label,split\n")
    with pytest.raises(BatchRejected, match="no rows"):
        build_manifest(tmp_path)


def test_content_hash_ignores_row_order(tmp_path):
    for name in ("a", "b"):
        write_video(tmp_path / f"{name}.mp4", moving_square(8, size=32, jumps=(2 if name == "a" else 5,)))
    m1 = build_manifest(_batch(tmp_path, "video,label,split\na.mp4,x,train\nb.mp4,y,test\n")).accepted
    m2 = build_manifest(_batch(tmp_path, "video,label,split\nb.mp4,y,test\na.mp4,x,train\n")).accepted
    assert content_hash(m1) == content_hash(m2)
    m3 = build_manifest(_batch(tmp_path, "video,label,split\nb.mp4,x,test\na.mp4,x,train\n")).accepted
    assert content_hash(m3) != content_hash(m1)
