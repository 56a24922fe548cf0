"""Validate an incoming batch: probe every video once, check labels.csv and the manifest with a
Great Expectations suite, quarantine bad rows with a reason each, reject bad batches.

Probing turns files into facts (one manifest row per labels.csv row: decodes, frames, fps, size,
duration, codec, video stream, variable frame rate, sha256, where the path points); the GX suites
turn facts into verdicts, and their results are the Data Docs report. Three suites:

- ``labels``  — on labels.csv as read: required columns, at least one row (batch level);
- ``rows``    — on the manifest, one expectation per rule; a row failing any rule is quarantined
  with a one-line reason naming the row, the file and the fix (row level);
- ``classes`` / ``batch`` — on the rows that passed: train and test videos per class, the share of
  quarantined rows, at least one usable row (batch level: the batch is rejected).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vidcil.io.cache import FrameCache
from vidcil.io.contract import REQUIRED_COLUMNS, SPLITS, sha256_file
from vidcil.io.video import STILL_IMAGE_CODECS, VideoDecodeError, probe_video

# Great Expectations reports usage to its vendor unless told not to; no network here.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

MANIFEST_FACTS = [
    "row", "video", "label", "split", "path_problem", "probe_error", "has_video", "frames", "fps",
    "width", "height", "duration_s", "codec", "variable_frame_rate", "bytes", "sha256",
    "duplicate_of",
]
# Names labels.csv columns cannot keep (the probe's facts, the verdict): such a column is renamed labels.<name>.
RESERVED_COLUMNS = (set(MANIFEST_FACTS) | {"reason"}) - set(REQUIRED_COLUMNS)


# A class name is any text of 1-128 characters without control characters or path separators
# (letters of any script, spaces, punctuation); leading and trailing spaces are dropped on reading.
LABEL_PATTERN = r"^[^\x00-\x1f\x7f-\x9f/\\]{1,128}$"


@dataclass(frozen=True)
class Rules:
    """Thresholds of the suite (``params.yaml`` → ``validation``)."""

    min_frames: int = 8  # what the model samples (model.num_segments)
    min_train_per_class: int = 4
    min_test_per_class: int = 2
    min_side: int = 16
    max_side: int = 4096
    min_duration_s: float = 0.1
    max_duration_s: float = 600.0
    allow_variable_frame_rate: bool = False
    max_quarantined_fraction: float = 0.2
    label_pattern: str = LABEL_PATTERN


@dataclass
class Verdict:
    batch_id: str
    reasons: list[str]  # batch-level: empty when the batch is accepted
    manifest: pd.DataFrame  # one row per labels.csv row: MANIFEST_FACTS + extra columns + reason
    unlisted: list[str] = field(default_factory=list)  # files in the folder that no row lists
    docs: Path | None = None  # the Data Docs page

    @property
    def accepted(self) -> bool:
        return not self.reasons

    @property
    def accepted_rows(self) -> pd.DataFrame:
        return self.manifest[self.manifest["reason"].isna()].reset_index(drop=True)

    @property
    def quarantined(self) -> pd.DataFrame:
        listed = self.manifest.loc[self.manifest["reason"].notna(), ["row", "video", "reason"]]
        unlisted = pd.DataFrame({
            "row": [None] * len(self.unlisted), "video": self.unlisted,
            "reason": [f"file {v!r} is in the batch folder but not in labels.csv; add a row for it "
                       "or remove the file (it was not taken)" for v in self.unlisted],
        })
        return pd.concat([listed, unlisted], ignore_index=True) if len(unlisted) else listed.reset_index(drop=True)

    def summary(self) -> dict:
        m = self.manifest
        return {
            "batch_id": self.batch_id, "verdict": "accepted" if self.accepted else "rejected",
            "reasons": self.reasons, "rows": len(m), "accepted_rows": int(m["reason"].isna().sum()) if len(m) else 0,
            "quarantined": self.quarantined.astype(object).where(self.quarantined.notna(), None).to_dict(orient="records"),
            "data_docs": str(self.docs) if self.docs else None,
        }


# -- reading labels.csv ----------------------------------------------------------------------

def read_labels(batch_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """labels.csv as strings, or ``(None, reason)`` when it cannot be read at all."""
    path = Path(batch_dir) / "labels.csv"
    if not path.is_file():
        return None, f"{path}: missing; a batch is complete only when labels.csv exists — add it last"
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # a BOM is fine
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        return None, (f"{path} line {line}: byte 0x{raw[e.start]:02x} is not UTF-8; "
                      "save labels.csv as UTF-8")
    if not text.strip():
        return None, f"{path}: empty; write the header video,label,split and one row per video"
    header_line, header = next(((i + 1, row) for i, row in enumerate(csv.reader(io.StringIO(text))) if row), (1, []))
    names = [h.strip() for h in header]
    repeated = [n for n in dict.fromkeys(names) if names.count(n) > 1]
    if repeated:  # pandas would rename the second one (label.1) and use the first without a word
        return None, (f"{path} line {header_line}: column {repeated[0]!r} appears {names.count(repeated[0])} times "
                      f"in the header ({','.join(names)}); keep one of them")
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.ParserError as e:
        return None, f"{path}: not a valid CSV ({str(e).strip()}); quote fields that contain commas"
    df.columns = [str(c).strip() for c in df.columns]
    # The user's own columns are kept; one named like a fact the probe records is kept as labels.<name>.
    df.columns = [f"labels.{c}" if c in RESERVED_COLUMNS else c for c in df.columns]
    if "label" in df.columns:  # one spelling per class name: "é" typed or composed is the same class
        df["label"] = df["label"].map(lambda v: unicodedata.normalize("NFC", v))
    return df, None


# -- probing ---------------------------------------------------------------------------------

def _path_problem(batch_dir: Path, video: str) -> str | None:
    if not video:
        return "has an empty video path; give the path relative to the batch folder"
    if Path(video).is_absolute():
        return "is an absolute path; give a path relative to the batch folder"
    if ".." in Path(video).parts:
        return "leaves the batch folder ('..'); move the file into the batch folder"
    target = batch_dir / video
    try:
        inside = target.resolve(strict=False).is_relative_to(batch_dir.resolve())
    except (OSError, RuntimeError):  # a loop of links
        return "goes through a loop of links; copy the file in instead"
    if not inside:  # a link, the file's or a folder's on the way to it, leads out of the batch
        link = next((part for part in (batch_dir / Path(*Path(video).parts[:i + 1])
                                       for i in range(len(Path(video).parts))) if part.is_symlink()), target)
        what = "a link to a file" if link == target else f"under {link.relative_to(batch_dir).as_posix()!r}, a link to a folder"
        return f"is {what} outside the batch folder; copy the file in instead"
    if not target.exists():
        return "does not exist; add the file or remove the row"
    if not target.is_file():
        return "is not a file; list video files only"
    return None


def probe_rows(batch_dir: Path, labels: pd.DataFrame, max_side: int, cache: FrameCache | None = None) -> pd.DataFrame:
    """One manifest row per labels.csv row: the facts the suite checks (``MANIFEST_FACTS``).

    With a ``cache``, every video that decodes is stored there at the working resolution in the
    same decoding pass, so training never decodes it again.
    """
    batch_dir = Path(batch_dir)
    records, first_row_of = [], {}
    for i, row in labels.iterrows():
        video = row["video"].strip()
        rec = {c: row[c] for c in labels.columns}
        rec.update(row=int(i) + 2, video=video, label=row["label"].strip(), split=row["split"].strip(),
                   path_problem=_path_problem(batch_dir, video), probe_error=None, has_video=None,
                   frames=None, fps=None, width=None, height=None, duration_s=None, codec=None,
                   variable_frame_rate=None, bytes=None, sha256=None, duplicate_of=None)
        if rec["path_problem"] is None:
            path = batch_dir / video
            rec["bytes"] = path.stat().st_size
            rec["sha256"] = sha256_file(path)
            collected = cache.collector() if cache is not None and not cache.entry(rec["sha256"]).is_file() else None
            try:
                p = probe_video(path, max_side=max_side, on_frame=collected)
                if collected is not None and p.decoded:
                    cache.put(rec["sha256"], collected.result())
                rec.update(has_video=True, frames=p.frames, fps=round(p.fps, 3), width=p.width, height=p.height,
                           duration_s=round(p.duration_s, 3), codec=p.codec, variable_frame_rate=p.variable_frame_rate)
                if p.frames == 1 and p.codec in STILL_IMAGE_CODECS:
                    rec["probe_error"] = f"is a still image ({p.codec}), not a video; land a video clip or remove the row"
            except VideoDecodeError as e:
                rec.update(has_video="no video stream" not in str(e), probe_error=f"{e}; {e.fix}")
            first = first_row_of.setdefault(rec["sha256"], rec["row"])
            if first != rec["row"]:
                rec["duplicate_of"] = first
        records.append(rec)
    extra = [c for c in labels.columns if c not in MANIFEST_FACTS]
    return pd.DataFrame(records, columns=MANIFEST_FACTS + extra)


# -- the suite -------------------------------------------------------------------------------

def _row_rules(rules: Rules, known: dict[str, str]):
    """(name, expectation, what is wrong with a failing manifest row and the fix), in reporting order."""
    import great_expectations.expectations as gxe

    label_rule = ("1-128 characters, none a control character or a path separator" if rules.label_pattern == LABEL_PATTERN
                  else f"validation.label_pattern is {rules.label_pattern}")
    size = (lambda r: f"is {r['width']}x{r['height']}, outside {rules.min_side}-{rules.max_side} pixels a side; "
                      "rescale it (ffmpeg -vf scale=...) or remove the row")
    return [
        ("path", gxe.ExpectColumnValuesToBeNull(column="path_problem"), lambda r: r["path_problem"]),
        ("decodes", gxe.ExpectColumnValuesToBeNull(column="probe_error"), lambda r: r["probe_error"]),
        ("split", gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
         lambda r: f"has split {r['split']!r}, not one of {', '.join(SPLITS)}; use one of them"),
        ("label", gxe.ExpectColumnValuesToMatchRegex(column="label", regex=rules.label_pattern),
         lambda r: f"has label {r['label']!r}, which is not a class name ({label_rule}); rename the class"),
        ("frames", gxe.ExpectColumnValuesToBeBetween(column="frames", min_value=rules.min_frames),
         lambda r: f"has {r['frames']} frame(s), the model samples {rules.min_frames}; "
                   f"provide a clip of at least {rules.min_frames} frames"),
        ("width", gxe.ExpectColumnValuesToBeBetween(column="width", min_value=rules.min_side, max_value=rules.max_side),
         size),
        ("height", gxe.ExpectColumnValuesToBeBetween(column="height", min_value=rules.min_side, max_value=rules.max_side),
         size),
        ("duration", gxe.ExpectColumnValuesToBeBetween(column="duration_s", min_value=rules.min_duration_s,
                                                        max_value=rules.max_duration_s),
         lambda r: f"lasts {r['duration_s']} s, outside {rules.min_duration_s}-{rules.max_duration_s} s; "
                   "trim or replace it"),
        ("frame_rate", gxe.ExpectColumnValuesToBeInSet(
            column="variable_frame_rate", value_set=[False, True] if rules.allow_variable_frame_rate else [False]),
         lambda r: "has a variable frame rate; re-encode it at a constant rate "
                   "(ffmpeg -i in -fps_mode cfr -r 25 out.mp4)"),
        ("unique", gxe.ExpectColumnValuesToBeNull(column="duplicate_of"),
         lambda r: f"has the same content (sha256) as row {int(r['duplicate_of'])}; remove the duplicate row"),
        ("new", gxe.ExpectColumnValuesToNotBeInSet(column="sha256", value_set=sorted(known) or ["-"]),
         lambda r: f"is already in the store as {known.get(r['sha256'])} (same sha256); "
                   "remove the row, that video is known"),
    ]


def row_reason(r, problems: list[str]) -> str:
    """One line for a quarantined row: where it is, then every problem it has with its fix, ``|``-separated."""
    return f"labels.csv row {r['row']}: video {r['video']!r} " + " | ".join(problems)


class _Suite:
    """A file-backed GX context under ``root``: suites, validation results and Data Docs."""

    def __init__(self, root: Path):
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        root.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="file", project_root_dir=str(root))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.source = self.context.data_sources.add_or_update_pandas("incoming_batch")

    def run(self, name: str, df: pd.DataFrame, expectations: list, index_column: str | None) -> list:
        """Run ``expectations`` on ``df``; per expectation, the failing values of ``index_column``."""
        gx = self.gx
        batch = self.source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = self.context.suites.add_or_update(gx.ExpectationSuite(name=name))
        for e in expectations:
            suite.add_expectation(e)
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch, suite=suite))
        result_format = {"result_format": "COMPLETE"}
        if index_column:
            result_format["unexpected_index_column_names"] = [index_column]
        result = definition.run(batch_parameters={"dataframe": df}, result_format=result_format)
        if not index_column:  # table-level: a non-empty set means the expectation failed
            return [set() if r.success else {None} for r in result.results]
        return [{i[index_column] for i in r.result.get("unexpected_index_list") or []} for r in result.results]

    def docs(self) -> Path:
        self.context.build_data_docs()
        return Path(self.context.root_directory) / "uncommitted" / "data_docs" / "local_site" / "index.html"


def _unlisted(batch_dir: Path, listed: set[str]) -> list[str]:
    files = (p.relative_to(batch_dir).as_posix() for p in batch_dir.rglob("*") if p.is_file() or p.is_symlink())
    folders = {"/".join(v.split("/")[:i]) for v in listed for i in range(1, v.count("/") + 1)}  # a linked folder
    return sorted(f for f in files if f != "labels.csv" and not any(part.startswith(".") for part in f.split("/"))
                  and f not in listed and f not in folders)


def validate_batch(batch_dir: Path, rules: Rules, report_dir: Path, *,
                   known: dict[str, str] | None = None, cache: FrameCache | None = None) -> Verdict:
    """Validate ``batch_dir`` (the contract); write the GX project and Data Docs to ``report_dir``.

    ``known`` maps the sha256 of every already-accepted video to where it is (``b000/x.mp4``);
    ``cache``: filled with every decodable video while it is probed.
    """
    batch_dir, known = Path(batch_dir), known or {}
    shutil.rmtree(report_dir / "gx", ignore_errors=True)  # a rerun reports afresh
    suite = _Suite(report_dir)
    empty = pd.DataFrame(columns=MANIFEST_FACTS + ["reason"])
    labels, problem = read_labels(batch_dir)
    if problem:
        return Verdict(batch_dir.name, [problem], empty, docs=None)

    import great_expectations.expectations as gxe

    table_checks = suite.run("labels", labels, [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(REQUIRED_COLUMNS), exact_match=False),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
    ], None)
    reasons = []
    if table_checks[0]:
        missing = [c for c in REQUIRED_COLUMNS if c not in labels.columns]
        reasons.append(f"{batch_dir / 'labels.csv'}: missing column(s) {', '.join(missing)} (found: "
                       f"{', '.join(labels.columns)}); the header must contain {','.join(REQUIRED_COLUMNS)}")
    if table_checks[1]:
        reasons.append(f"{batch_dir / 'labels.csv'}: no rows; list at least one video")
    if reasons:
        return Verdict(batch_dir.name, reasons, empty, docs=suite.docs())

    manifest = probe_rows(batch_dir, labels, rules.max_side, cache)
    row_rules = _row_rules(rules, known)
    failing = suite.run("rows", manifest, [e for _, e, _ in row_rules], "row")
    problems: dict[int, list[str]] = {}
    for (_, _, problem), rows in zip(row_rules, failing):  # every rule a row fails, in the rules' order
        for row in rows:
            r = manifest.loc[manifest["row"] == int(row)].iloc[0]
            text = problem(r)
            if text not in problems.setdefault(int(row), []):  # width and height give one size problem
                problems[int(row)].append(text)
    manifest["reason"] = manifest["row"].map(
        {row: row_reason(manifest.loc[manifest["row"] == row].iloc[0], ps) for row, ps in problems.items()})
    unlisted = _unlisted(batch_dir, set(manifest["video"]))

    good = manifest[manifest["reason"].isna()]
    classes = pd.DataFrame({
        "label": sorted(set(good["label"])),
    })
    classes["train"] = [int(((good["label"] == c) & (good["split"] == "train")).sum()) for c in classes["label"]]
    classes["test"] = [int(((good["label"] == c) & (good["split"] == "test")).sum()) for c in classes["label"]]
    if len(classes):
        short_train, short_test = suite.run("classes", classes, [
            gxe.ExpectColumnValuesToBeBetween(column="train", min_value=rules.min_train_per_class),
            gxe.ExpectColumnValuesToBeBetween(column="test", min_value=rules.min_test_per_class),
        ], "label")
        for c in sorted(short_train | short_test):
            n = classes.set_index("label").loc[c]
            reasons.append(
                f"class {c!r} has {n['train']} train and {n['test']} test video(s) that passed; a class needs at "
                f"least {rules.min_train_per_class} train and {rules.min_test_per_class} test videos — add videos "
                "or move the class to a later batch")
    totals = pd.DataFrame([{"rows": len(manifest), "usable_rows": len(good),
                            "quarantined_fraction": 1 - len(good) / len(manifest)}])
    no_usable, too_many = suite.run("batch", totals, [
        gxe.ExpectColumnValuesToBeBetween(column="usable_rows", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="quarantined_fraction", max_value=rules.max_quarantined_fraction),
    ], None)
    if no_usable:
        reasons.insert(0, f"{batch_dir}: no usable row ({len(manifest)} quarantined); see the reasons per row")
    elif too_many:
        reasons.insert(0, f"{batch_dir}: {len(manifest) - len(good)} of {len(manifest)} rows quarantined, more than "
                          f"{rules.max_quarantined_fraction:.0%}; fix the rows (reasons per row) and land the batch again")
    return Verdict(batch_dir.name, reasons, manifest, unlisted, suite.docs())


def write_report(verdict: Verdict, report_dir: Path) -> dict:
    """``summary.json``, ``manifest.csv`` (every row, with its probe facts and reason), ``quarantine.csv``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    verdict.manifest.to_csv(report_dir / "manifest.csv", index=False)
    verdict.quarantined.to_csv(report_dir / "quarantine.csv", index=False)
    summary = verdict.summary()
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validation_rules(params) -> Rules:
    """The suite's thresholds from ``params.validation``; ``min_frames`` defaults to what the model samples."""
    rules = params.validation.model_dump()
    return Rules(**rules | {"min_frames": rules["min_frames"] or params.model.num_segments,
                            "label_pattern": rules["label_pattern"] or LABEL_PATTERN})


def known_videos(store, batch_id: str) -> dict[str, str]:
    """sha256 -> ``<batch>/<video>`` of every video accepted in another batch of ``store`` (duplicate check)."""
    known = {}
    for b in store.accepted():
        if b != batch_id:
            m = store.manifest(b)
            known.update((sha, f"{b}/{video}") for sha, video in zip(m["sha256"], m["video"]))
    return known
