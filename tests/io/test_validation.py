"""The bad-input catalogue: every case runs the real validate step (probe with FFmpeg, the Great
Expectations suite, the DVC-versioned store, MLflow on SQLite) on a batch landed next to an
accepted batch ``b000``, and asserts the exact outcome and that nothing already stored changed."""

from __future__ import annotations

import hashlib
import re
import json
import shutil
import unicodedata
import wave
from pathlib import Path

import av
import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.conftest import tiny_params
from vidcil import cli
from vidcil.io import mlflow_registry
from vidcil.io.contract import BatchRejected, content_hash
from vidcil.io.video import write_video
from vidcil.pipeline.runner import run_step
from vidcil.io.store import Store
from vidcil.pipeline.state import read_output

CLASSES = ("push", "pull")
HEADER = "video,label,split"


def _clip(seed: int, n_frames: int = 8, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n_frames, size, size, 3), dtype=np.uint8)


def _encode(path: Path, frames: np.ndarray, pts=None) -> None:
    """A fast, loose H.264 writer for odd inputs (variable frame rate, huge frames)."""
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=8)
        s.height, s.width = frames.shape[1:3]
        s.pix_fmt, s.options = "yuv420p", {"preset": "ultrafast"}
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="yuv420p")
            frame.pts = pts[i] if pts else i
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def good_batch(folder: Path, seed: int) -> None:
    """2 classes x (3 train + 2 test) distinct 8-frame clips: labels.csv rows 2-11."""
    rows = [HEADER]
    for c, label in enumerate(CLASSES):
        for split, n in (("train", 3), ("test", 2)):
            for i in range(n):
                video = f"{label}/{split}_{i}.mp4"
                write_video(folder / video, _clip(seed * 1000 + c * 100 + (split == "test") * 10 + i))
                rows.append(f"{video},{label},{split}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def add_row(folder: Path, line: str) -> None:
    with open(folder / "labels.csv", "a") as f:
        f.write(line + "\n")


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A project whose store holds the accepted, DVC-tracked batch b000."""
    root = tmp_path_factory.mktemp("base")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        params = tiny_params(root)
        good_batch(params.paths.landing / "b000", seed=0)
        run_step(params, "validate", "b000")
    return root


@pytest.fixture
def project(base, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(base, root, symlinks=True)
    return root, tiny_params(root)


def _validate(params, batch_id):
    """The step as runners call it: returns its output, or raises BatchRejected (never anything else)."""
    try:
        return run_step(params, "validate", batch_id), None
    except BatchRejected as e:
        return read_output(params, batch_id, "validate"), e


# -- row-level problems: the row is quarantined with its reason, the rest of the batch accepted ---

def _bad_video(write):
    """A case that lists one more video ``bad.*`` (row 12), written by ``write(path)``."""
    def mutate(folder, root):
        name = write(folder)
        add_row(folder, f"{name},push,train")
        return name
    return mutate


def _zero_bytes(folder):
    (folder / "bad.mp4").write_bytes(b"")
    return "bad.mp4"


def _truncated(folder):
    data = (folder / "push/train_0.mp4").read_bytes()
    (folder / "bad.mp4").write_bytes(data[: len(data) // 2])
    return "bad.mp4"


def _text(folder):
    (folder / "bad.mp4").write_text("this is not a video\n")
    return "bad.mp4"


def _still_image(folder):
    import matplotlib.image

    matplotlib.image.imsave(folder / "bad.png", _clip(7, 1)[0])
    return "bad.png"


def _audio_only(folder):
    with wave.open(str(folder / "bad.mp4"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(np.zeros(8000, np.int16).tobytes())
    return "bad.mp4"


def _one_frame(folder):
    write_video(folder / "bad.mp4", _clip(7, 1))
    return "bad.mp4"


def _zero_duration(folder):
    c = av.open(str(folder / "bad.mp4"), "w", format="mp4")  # a video stream, never a frame
    s = c.add_stream("libx264", rate=8)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    c.start_encoding()  # writes the header
    c.close()
    return "bad.mp4"


def _huge(folder):
    _encode(folder / "bad.mp4", np.zeros((8, 256, 4608, 3), np.uint8))  # wider than 4K: refused unread
    return "bad.mp4"


def _variable_rate(folder):
    _encode(folder / "bad.mp4", _clip(7, 10), pts=[0, 1, 2, 5, 6, 7, 12, 13, 14, 20])
    return "bad.mp4"


def _encode_clip(path: Path, n_frames: int, fmt: str, options: dict | None = None) -> None:
    """``n_frames`` random 32x32 frames at 8 fps as H.264 in ``fmt`` (container options: ``options``)."""
    with av.open(str(path), "w", format=fmt, options=options or {}) as c:
        s = c.add_stream("libx264", rate=8)
        s.width = s.height = 32
        s.pix_fmt, s.options = "yuv420p", {"preset": "ultrafast"}
        for f in _clip(11, n_frames):
            for packet in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def _cut(name: str, fmt: str, options: dict | None = None, keep: float = 0.4):
    """A 40-frame clip in ``fmt`` whose last bytes are gone (an interrupted upload): FFmpeg still decodes
    its first frames, so only the header's frame count or duration shows what is missing."""
    def write(folder):
        _encode_clip(folder / "whole.tmp", 40, fmt, options)
        data = (folder / "whole.tmp").read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * keep)])
        (folder / "whole.tmp").unlink()
        return name
    return write


def _listed(line):
    def mutate(folder, root):
        add_row(folder, line)
    return mutate


def _with_video(label="push", split="train", name="extra.mp4", seed=77):
    def mutate(folder, root):
        write_video(folder / name, _clip(seed))
        add_row(folder, f"{name},{label},{split}")
    return mutate


def _same_content(folder, root):
    shutil.copy(folder / "push/train_0.mp4", folder / "push/copy.mp4")
    add_row(folder, "push/copy.mp4,push,train")


def _symlink_outside(folder, root):
    write_video(root / "outside.mp4", _clip(99))
    (folder / "link.mp4").symlink_to(root / "outside.mp4")
    add_row(folder, "link.mp4,push,train")


def _symlinked_folder_outside(folder, root):
    (root / "elsewhere").mkdir()
    write_video(root / "elsewhere/x.mp4", _clip(98))
    (folder / "clips").symlink_to(root / "elsewhere", target_is_directory=True)
    add_row(folder, "clips/x.mp4,push,train")


def _unlisted(folder, root):
    write_video(folder / "push/unlisted.mp4", _clip(55))


def _known_content(folder, root):
    shutil.copy(root / "landing/b000/pull/test_1.mp4", folder / "again.mp4")
    add_row(folder, "again.mp4,pull,test")


COPY_AGAIN = "copy the file again (its transfer or recording was cut off)"
ROW_CASES = {
    "zero-byte file": (_bad_video(_zero_bytes), 12, f"is empty (0 bytes); {COPY_AGAIN}"),
    "truncated mp4": (_bad_video(_truncated), 12, "is truncated: its 'mdat' box needs"),
    "truncated mp4, index first": (_bad_video(_cut("bad.mp4", "mp4", {"movflags": "faststart"})), 12,
                                   "is truncated: its 'mdat' box needs"),
    "truncated Matroska": (_bad_video(_cut("bad.mkv", "matroska")), 12, "is truncated: its header says 5.00 s"),
    "text file named .mp4": (_bad_video(_text), 12, "cannot be decoded by FFmpeg (Invalid data found when processing "
                                                    "input); if it plays elsewhere, re-encode it"),
    "still image": (_bad_video(_still_image), 12, "is a still image (png), not a video"),
    "audio-only file": (_bad_video(_audio_only), 12, "has no video stream (audio only); land the video itself"),
    "one-frame video": (_bad_video(_one_frame), 12, "has 1 frame(s), the model samples 4"),
    "zero-duration video": (_bad_video(_zero_duration), 12, "no stream at all (an empty, zero-duration container)"),
    "very large resolution": (_bad_video(_huge), 12, "is 4608x256, outside 16-4096 pixels a side"),
    "variable frame rate": (_bad_video(_variable_rate), 12, "has a variable frame rate"),
    "duplicate row": (_listed("push/train_0.mp4,push,train"), 12, "same content (sha256) as row 2"),
    "same content under two names": (_same_content, 12, "same content (sha256) as row 2"),
    "content accepted in an earlier batch": (_known_content, 12, "already in the store as b000/pull/test_1.mp4"),
    "absolute path": (_listed("/etc/hostname,push,train"), 12, "video '/etc/hostname' is an absolute path"),
    "../ path traversal": (_listed("../b000/push/train_0.mp4,push,train"), 12, "leaves the batch folder"),
    "symlink pointing outside": (_symlink_outside, 12, "'link.mp4' is a link to a file outside the batch folder"),
    "symlinked folder pointing outside": (_symlinked_folder_outside, 12,
                                          "'clips/x.mp4' is under 'clips', a link to a folder outside the batch folder"),
    "listed file does not exist": (_listed("ghost.mp4,push,train"), 12, "'ghost.mp4' does not exist"),
    "empty label": (_with_video(label=""), 12, "has label '', which is not a class name"),
    "whitespace label": (_with_video(label="   "), 12, "has label '', which is not a class name"),
    "very long label": (_with_video(label="x" * 200), 12, "which is not a class name (1-128 characters"),
    "label with a path separator": (_with_video(label="push/pull"), 12, "has label 'push/pull', which is not"),
    "label with a control character": (_with_video(label="push\x07"), 12, "has label 'push\\x07', which is not"),
    "unknown split": (_with_video(split="val"), 12, "has split 'val', not one of train, test"),
    "empty video path": (_listed(",push,train"), 12, "has an empty video path"),
    "two problems in one row": (_with_video(label="a/b", split="val"), 12,
                                "has split 'val', not one of train, test; use one of them | has label 'a/b'"),
}


@pytest.mark.parametrize("case", ROW_CASES, ids=list(ROW_CASES))
def test_bad_row_is_quarantined_with_its_reason(project, case):
    root, params = project
    mutate, row, reason = ROW_CASES[case]
    folder = params.paths.landing / "b001"
    good_batch(folder, seed=1)
    mutate(folder, root)
    before = snapshot(params.paths.store / "batches" / "b000")

    out, error = _validate(params, "b001")

    assert error is None and out["verdict"] == "accepted"
    quarantined = {q["row"]: q["reason"] for q in out["quarantined"]}
    assert list(quarantined) == [row], quarantined
    assert quarantined[row].startswith(f"labels.csv row {row}: ") and reason in quarantined[row]
    assert "; " in quarantined[row]  # ... and the fix
    stored = Store(params.paths.store).manifest("b001")
    assert len(stored) == 10 and not stored["video"].str.startswith(("bad", "/", "..", "link", "clips")).any()
    assert snapshot(params.paths.store / "batches" / "b000") == before


def test_file_present_but_not_listed_is_reported_and_not_taken(project):
    root, params = project
    folder = params.paths.landing / "b001"
    good_batch(folder, seed=1)
    _unlisted(folder, root)
    out, error = _validate(params, "b001")
    assert error is None
    assert [(q["row"], q["video"]) for q in out["quarantined"]] == [(None, "push/unlisted.mp4")]
    assert "not in labels.csv" in out["quarantined"][0]["reason"]
    assert not (params.paths.store / "batches/b001/push/unlisted.mp4").exists()


# -- batch-level problems: the batch is rejected, kept for people, and the store is untouched ---

def _rewrite_labels(transform):
    def mutate(folder, root):
        path = folder / "labels.csv"
        path.write_bytes(transform(path.read_bytes()))
    return mutate


def _no_labels(folder, root):
    (folder / "labels.csv").unlink()


def _class_without_test(folder, root):
    for i in range(2):
        write_video(folder / f"wave/train_{i}.mp4", _clip(300 + i))
        add_row(folder, f"wave/train_{i}.mp4,wave,train")


def _many_bad_rows(folder, root):
    for i in range(4):
        add_row(folder, f"ghost_{i}.mp4,push,train")


BATCH_CASES = {
    "missing labels.csv": (_no_labels, "labels.csv: missing"),
    "empty labels.csv": (_rewrite_labels(lambda b: b""), "labels.csv: empty"),
    "missing column": (_rewrite_labels(lambda b: b.replace(b",train", b"").replace(b",test", b"")
                                       .replace(b",split", b"")), "missing column(s) split"),
    "renamed column": (_rewrite_labels(lambda b: b.replace(b"video,", b"file,", 1)),
                       "missing column(s) video (found: file, label, split)"),
    "non-UTF-8 bytes": (_rewrite_labels(lambda b: b + b"push/train_0.mp4,caf\xe9,train\n"),
                        "line 12: byte 0xe9 is not UTF-8; save labels.csv as UTF-8"),
    "malformed CSV": (_rewrite_labels(lambda b: b + b"a.mp4,push,train,extra,fields\n"), "not a valid CSV"),
    "repeated header column": (_rewrite_labels(lambda b: b.replace(b"\n", b",x\n").replace(b"split,x", b"split,label", 1)),
                               "line 1: column 'label' appears 2 times in the header (video,label,split,label); keep one"),
    "zero rows": (_rewrite_labels(lambda b: b.split(b"\n")[0] + b"\n"), "no rows; list at least one video"),
    "class with train but no test videos": (_class_without_test, "class 'wave' has 2 train and 0 test video(s)"),
    "too many bad rows": (_many_bad_rows, "4 of 14 rows quarantined, more than 20%"),
}


@pytest.mark.parametrize("case", BATCH_CASES, ids=list(BATCH_CASES))
def test_bad_batch_is_rejected_with_its_reason_and_nothing_stored_changes(project, case):
    root, params = project
    mutate, reason = BATCH_CASES[case]
    folder = params.paths.landing / "b001"
    good_batch(folder, seed=1)
    mutate(folder, root)
    before = snapshot(params.paths.store)

    out, error = _validate(params, "b001")

    assert error is not None and reason in str(error), str(error)
    assert out["verdict"] == "rejected" and reason in out["reason"]
    assert snapshot(params.paths.store) == before  # not stored, not versioned
    kept = list((params.paths.rejected / "b001").iterdir())
    assert len(kept) == 1 and snapshot(kept[0]) == snapshot(folder)  # kept for people
    summary = json.loads((params.paths.runs / "b001/validation/summary.json").read_text())
    assert summary["verdict"] == "rejected" and reason in " ".join(summary["reasons"])


def test_batch_id_already_accepted_with_other_content_is_rejected(project):
    root, params = project
    shutil.rmtree(params.paths.landing / "b000")
    good_batch(params.paths.landing / "b000", seed=1)
    before = snapshot(params.paths.store)
    _, error = _validate(params, "b000")
    assert "accepted already with other content" in str(error)
    assert snapshot(params.paths.store) == before


def test_batch_id_that_sorts_before_an_accepted_batch_is_rejected(project):
    root, params = project
    good_batch(params.paths.landing / "a999", seed=1)
    _, error = _validate(params, "a999")
    assert "sorts before 'b000'" in str(error)
    good_batch(params.paths.landing / "b 1", seed=1)
    _, error = _validate(params, "b 1")
    assert "is not a valid id" in str(error)


def test_revalidating_an_accepted_batch_changes_nothing(project):
    root, params = project
    before = snapshot(params.paths.store)
    first = read_output(params, "b000", "validate")
    out, error = _validate(params, "b000")
    assert error is None and out["data_version"] == first["data_version"]
    assert snapshot(params.paths.store) == before
    runs = mlflow.search_runs(filter_string="tags.`vidcil.step` = 'validate' and tags.`vidcil.batch_id` = 'b000'")
    assert len(runs) == 1  # the same content validated again reuses its MLflow run


# -- inputs that are fine ------------------------------------------------------------------------

def test_class_names_are_any_unicode_text_one_spelling_each_and_fit_mlflow(project):
    """A class called ``gamma ray, ñandú`` (a comma, a space, letters outside ASCII) is a class; typed
    with a combining tilde in one row it is still the same class (NFC); MLflow takes its metric name."""
    root, params = project
    folder = params.paths.landing / "b001"
    good_batch(folder, seed=1)
    composed, decomposed = "gamma ray, ñandú", unicodedata.normalize("NFD", "gamma ray, ñandú")
    text = (folder / "labels.csv").read_text(encoding="utf-8")
    rows = text.splitlines()
    rows = [rows[0]] + [r.replace(",push,", f',"{decomposed if i % 2 else composed}",') .replace(",pull,", ",slide right,")
                        for i, r in enumerate(rows[1:])]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out, error = _validate(params, "b001")
    assert error is None and out["quarantined"] == [] and out["accepted"] == 10
    stored = Store(params.paths.store).manifest("b001")
    assert sorted(set(stored["label"])) == sorted([composed, "slide right"])
    mlflow_registry.configure(params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location)
    with mlflow.start_run() as run:  # the per-class metric evaluate logs; MLflow raises on a name it refuses
        mlflow.log_metric(f"accuracy_class/{mlflow_registry.metric_key(composed)}", 1.0)
    assert list(mlflow.get_run(run.info.run_id).data.metrics) == ["accuracy_class/gamma ray_ ñandú"]


def test_extra_columns_bom_and_crlf_are_accepted_and_extra_columns_kept(project):
    root, params = project
    folder = params.paths.landing / "b001"
    good_batch(folder, seed=1)
    lines = (folder / "labels.csv").read_text().splitlines()
    # The user's columns are kept, one named like a probed fact (duration_s) too: as labels.duration_s.
    lines = [lines[0] + ",camera,duration_s"] + [line + ",cam1,long" for line in lines[1:]]
    (folder / "labels.csv").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    out, error = _validate(params, "b001")
    assert error is None and out["quarantined"] == [] and out["accepted"] == 10
    stored = Store(params.paths.store).manifest("b001")
    assert stored["camera"].eq("cam1").all() and stored["label"].isin(CLASSES).all()
    assert stored["labels.duration_s"].eq("long").all() and stored["duration_s"].eq(1.0).all()  # 8 frames, 8 fps
    assert {"sha256", "frames", "fps", "width", "height", "duration_s", "codec"} <= set(stored.columns)
    assert stored["frames"].eq(8).all() and stored["codec"].eq("h264").all()


def test_report_is_data_docs_plus_summary_kept_with_the_run_and_logged_to_mlflow(project):
    root, params = project
    folder = params.paths.landing / "b001"
    good_batch(folder, seed=1)
    add_row(folder, "ghost.mp4,push,train")
    out, _ = _validate(params, "b001")
    report = params.paths.runs / "b001/validation"
    docs = Path(out["data_docs"])
    assert docs.is_file() and docs.is_relative_to(report)
    html = "".join(p.read_text(errors="ignore") for p in docs.parent.rglob("*.html"))
    assert "expect_column_values_to_be_null" in html or "path_problem" in html
    quarantine = pd.read_csv(report / "quarantine.csv")
    assert quarantine["row"].tolist() == [12]
    mlflow_registry.configure(params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location)
    run = mlflow.search_runs(filter_string="tags.`vidcil.step` = 'validate' and tags.`vidcil.batch_id` = 'b001'",
                             output_format="list")[0]
    logged = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "validation")}
    assert {"validation/summary.json", "validation/quarantine.csv", "validation/data_docs"} <= logged
    assert run.data.metrics["quarantined"] == 1 and run.data.tags["vidcil.verdict"] == "accepted"


def test_cli_prints_a_clear_verdict(project, capsys):
    root, params = project
    folder = root / "incoming" / "b001"
    good_batch(folder, seed=1)
    add_row(folder, "ghost.mp4,push,train")
    (root / "params.yaml").write_text(json.dumps(params.model_dump(mode="json")))
    assert cli.main(["--params", str(root / "params.yaml"), "validate", str(folder),
                     "--report", str(root / "report")]) == 0
    printed = capsys.readouterr().out
    assert "ACCEPTED" in printed and "labels.csv row 12: video 'ghost.mp4' does not exist" in printed
    (folder / "labels.csv").write_text(HEADER + "\n")
    assert cli.main(["--params", str(root / "params.yaml"), "validate", str(folder),
                     "--report", str(root / "report")]) == 3
    assert "REJECTED" in capsys.readouterr().out


def test_content_hash_ignores_row_order():
    a = pd.DataFrame({"video": ["a", "b"], "label": ["x", "y"], "split": ["train", "test"], "sha256": ["1", "2"]})
    assert content_hash(a) == content_hash(a.iloc[::-1])
    assert content_hash(a) != content_hash(a.assign(label=["y", "y"]))


def test_a_memory_budget_too_small_for_one_exemplar_per_class_rejects_the_batch_before_it_is_stored(tmp_path):
    # A frame policy that cannot adapt (fixed keyframes): one 32 px frame as a shard takes more.
    fixed = {"kind": "keyframes", "threshold": 0.05}
    params = tiny_params(tmp_path, memory={"budget_bytes": 1500, "frames": fixed})
    good_batch(params.paths.landing / "b000", seed=0)
    out, e = _validate(params, "b000")
    assert e is not None and out["verdict"] == "rejected"
    assert re.search(r"memory.budget_bytes 1500 B leaves 750 B per class for the 2 classes after this batch, too "
                     r"little for one exemplar of pull, push \(one frame at the working resolution takes up to \d+ B\); "
                     r"raise memory.budget_bytes to at least \d+", str(e)), str(e)
    assert Store(params.paths.store).accepted() == []  # never stored, never versioned
    wanted = int(re.search(r"at least (\d+)", str(e)).group(1))
    ok = tiny_params(tmp_path, memory={"budget_bytes": wanted, "frames": fixed})
    assert _validate(ok, "b000")[0]["verdict"] == "accepted"  # the advice is enough


def test_an_adapting_memory_accepts_any_budget(tmp_path):
    params = tiny_params(tmp_path, memory={"budget_bytes": 1500})  # the default policy, fit
    good_batch(params.paths.landing / "b000", seed=0)
    assert _validate(params, "b000")[0]["verdict"] == "accepted"
