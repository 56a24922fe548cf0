"""The input path on camera-like video, measured: decode, cache, data rate, training rate, memory.

    python benchmarks/input_pipeline.py [--out benchmarks/results/input_pipeline] [--landing DIR] [--quick]

On one batch of the realistic stream (:mod:`vidcil.io.realistic`: 240p-1080p, landscape and
portrait, 10-60 fps, 2-30 s, mp4/mkv/webm/mov) it measures

1. the batch itself: how many clips, how many of them 720p / 1080p and >= 10 s;
2. the decode cost of each clip on first touch (``FrameCache.frames`` on an empty cache, at the
   default working resolution: short side 128, 64 frames) and the cache bytes per clip, by
   resolution;
3. the data rate (clips/s) of the training loader (``clip_loader(clip_dataset(train=True))``,
   batch 8, T = 8, input 112) with 0, 1 and 2 workers, cold (empty cache: first touch decodes)
   and warm (the second pass);
4. the training step rate of ResNet-18-TSM (T = 8, batch 8, synthetic tensors) at 112 and 224,
   the ratio of the warm data rate to it, and real ``train()`` epochs on the batch (the loader
   and the model sharing the same cores) with 0 and 2 workers;
5. the peak memory of a whole pipeline batch (``vidcil run-batch b000`` in a fresh process and
   project), on the batch, and on a smaller batch as filmed, with every clip twice as long, and
   with every clip twice as large (2x width and height): peak memory should not grow with them.

Prints markdown tables and writes ``results.json`` (every number, the machine, the command line)
and ``results.md`` into ``--out``. Generation is deterministic and slow, so the videos are kept
under ``--landing`` (one folder per profile) and reused by later runs; ``--landing`` may also be
a stream folder holding ``b000/labels.csv`` (then only the smaller variants are generated, under
``<landing>/variants``). ``--quick``: a few small, short clips (a smoke test, ~3 minutes).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path

import av
import numpy as np
import psutil
import torch
import torch.nn.functional as F
import yaml

from vidcil.config import Params
from vidcil.io.cache import FrameCache
from vidcil.core.loader import clip_loader
from vidcil.io.clips import ClipRef
from vidcil.io.contract import sha256_file
from vidcil.io.inputs import clip_dataset
from vidcil.core.models.tsm import VideoRecognizer
from vidcil.core.training import train

try:
    from vidcil.io.realistic import RealisticProfile, generate_realistic_stream
except ImportError as e:  # the generator is someone else's work in progress
    sys.exit(f"vidcil.io.realistic is not importable yet ({e}); retry later")

BATCH = "b000"
SHORT_SIDE, MAX_FRAMES, INPUT_SIZE, SEGMENTS, BATCH_SIZE = 128, 64, 112, 8, 8  # DataParams defaults
VENV_BIN = Path(sys.executable).parent
GIB = 2**30


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the streams ---------------------------------------------------------------------------------


def profiles(quick: bool) -> dict[str, RealisticProfile]:
    """``main``: the batch of measurements 1-5; ``base``/``long``/``large``: the memory variants."""
    if quick:
        # 20 training clips: 3 batches of 8, so that the loader really starts 2 workers (it starts at
        # most one fewer than there are batches)
        main = RealisticProfile(class_batches=1, train_per_class=5, test_per_class=1, min_seconds=1.0,
                                max_seconds=3.0, landscape=((426, 240), (1280, 720)), portrait=((360, 640),),
                                frame_rates=(10, 15), seed=0)
        base = replace(main, train_per_class=1, test_per_class=1, max_seconds=2.0,
                       landscape=((426, 240), (640, 360)), portrait=((360, 640),))
    else:
        main = RealisticProfile(class_batches=1, train_per_class=20, test_per_class=6, min_seconds=2.0,
                                max_seconds=30.0, seed=0)
        # 4 classes x (1 train + 1 test), as the batch is filmed: 8 clips from 360x640 10 fps 2 s to
        # 1080x1920 15 fps 14.7 s; twice as large, that is 2160x3840 (the validator takes <= 4096).
        base = replace(main, train_per_class=1, test_per_class=1)
    return {
        "main": main,
        "base": base,
        "long": replace(base, min_seconds=2 * base.min_seconds, max_seconds=2 * base.max_seconds),
        "large": replace(base, landscape=tuple((2 * w, 2 * h) for w, h in base.landscape),
                         portrait=tuple((2 * w, 2 * h) for w, h in base.portrait)),
    }


def profile_key(profile: RealisticProfile) -> str:
    return hashlib.sha256(json.dumps(asdict(profile), sort_keys=True).encode()).hexdigest()[:10]


def ensure_stream(root: Path, name: str, profile: RealisticProfile) -> tuple[Path, float]:
    """The stream folder for ``profile`` under ``root`` (generated unless complete); seconds spent."""
    folder = root / f"{name}-{profile_key(profile)}"
    if (folder / BATCH / "labels.csv").is_file():
        when = made_in(folder)
        log(f"{name}: reusing {folder}" + (f" (generated in {when:.0f} s)" if when else ""))
        return folder, 0.0
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profile.json").write_text(json.dumps(asdict(profile), indent=1))
    log(f"{name}: generating {folder} (deterministic; kept for later runs)")
    start, last = time.perf_counter(), [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            log(f"  {name}: {done}/{total} clips, {last[0] - start:.0f} s")

    generate_realistic_stream(folder, profile, only=[BATCH], progress=progress)
    seconds = time.perf_counter() - start
    (folder / "generation.json").write_text(json.dumps({"seconds": seconds, "cpu_count": os.cpu_count(),
                                                        "load_average": os.getloadavg()}))
    return folder, seconds


def made_in(folder: Path) -> float | None:
    """Seconds the stream took to generate when it was made (``None``: not recorded)."""
    made = folder / "generation.json"
    return json.loads(made.read_text()).get("seconds") if made.is_file() else None


def clip_table(stream: Path) -> list[dict]:
    """Every clip of the batch with its split, label and header facts (size, rate, duration)."""
    batch = stream / BATCH
    with open(batch / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    classes = sorted({r["label"] for r in rows})
    clips = []
    for r in rows:
        path = batch / r["video"]
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            fps = float(s.average_rate or s.guessed_rate or 0)
            duration = c.duration / 1e6 if c.duration else float((s.duration or 0) * s.time_base)
            w, h = s.codec_context.width, s.codec_context.height
        clips.append({"video": r["video"], "label": r["label"], "split": r["split"], "path": str(path),
                      "label_index": classes.index(r["label"]), "width": w, "height": h, "fps": fps,
                      "seconds": duration, "frames_est": round(fps * duration), "codec": s.codec_context.name,
                      "file_bytes": path.stat().st_size, "sha256": sha256_file(path)})
    return clips


def refs_of(clips: list[dict], split: str) -> list[ClipRef]:
    return [ClipRef(Path(c["path"]), c["label_index"], BATCH, c["video"], c["sha256"])
            for c in clips if c["split"] == split]


def resolution(c: dict) -> str:
    return f"{c['width']}x{c['height']}"


def hd_long_counts(clips: list[dict]) -> dict[str, int]:
    short = [min(c["width"], c["height"]) for c in clips]
    return {f"{p}p_ge_10s": sum(1 for c, s in zip(clips, short) if s == p and c["seconds"] >= 10) for p in (720, 1080)}


# -- 2 + 3: decode on first touch, cache bytes, loader data rate ----------------------------------


class TimedCache(FrameCache):
    """A FrameCache that records how long each first touch (decode + write) took, in this process."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_touch: dict[str, float] = {}

    def frames(self, path, sha256=None):
        before = self.decodes
        start = time.perf_counter()
        out = super().frames(path, sha256)
        if self.decodes > before:
            self.first_touch[sha256] = time.perf_counter() - start
        return out


def loader_params(root: Path, workers: int) -> Params:
    return Params.model_validate({
        "paths": {"cache": str(root)},
        "data": {"input_size": INPUT_SIZE, "short_side": SHORT_SIDE, "cache_max_frames": MAX_FRAMES,
                 "num_workers": workers},
        "model": {"num_segments": SEGMENTS},
    })


def one_pass(loader) -> tuple[int, float]:
    start, n = time.perf_counter(), 0
    for x, _ in loader:
        n += len(x)
    return n, time.perf_counter() - start


def data_rates(clips: list[dict], work: Path, workers_list: tuple[int, ...]) -> tuple[list[dict], list[dict], Path]:
    """Cold and warm passes of the training loader; the 0-worker cold pass also times each first touch.

    Returns the rates, the first touches, and the last (warm) cache folder, kept for :func:`train_epochs`."""
    refs = refs_of(clips, "train")
    rates, per_clip = [], []
    by_sha = {c["sha256"]: c for c in clips}
    for w in workers_list:
        root = work / f"cache-w{w}"
        shutil.rmtree(root, ignore_errors=True)
        params = loader_params(root, w)
        cache = TimedCache(root, SHORT_SIDE, MAX_FRAMES, 1 << 50)
        loader = clip_loader(clip_dataset(params, refs, train=True, cache=cache), batch_size=BATCH_SIZE,
                             train=True, seed=0, num_workers=w)
        log(f"data rate, {w} workers: cold pass over {len(refs)} clips")
        n_cold, t_cold = one_pass(loader)
        loader.sampler.set_epoch(1)
        n_warm, t_warm = one_pass(loader)
        log(f"  cold {n_cold / t_cold:.2f} clips/s, warm {n_warm / t_warm:.2f} clips/s")
        rates.append({"workers": w, "loader_workers": loader.num_workers, "clips": n_cold, "cold_s": t_cold, "cold_clips_per_s": n_cold / t_cold,
                      "warm_s": t_warm, "warm_clips_per_s": n_warm / t_warm,
                      "cache_entries": len(cache.entries()), "cache_bytes": cache.size_bytes()})
        if w == 0:
            for sha, seconds in cache.first_touch.items():
                entry = cache.entry(sha)
                shape = list(np.load(entry, mmap_mode="r").shape)
                c = by_sha[sha]
                per_clip.append({k: c[k] for k in ("video", "width", "height", "fps", "seconds", "frames_est",
                                                   "codec", "file_bytes")}
                                | {"first_touch_s": seconds, "cache_bytes": entry.stat().st_size
                                   + entry.with_suffix(".json").stat().st_size, "cached_shape": shape})
        del loader
        if w != workers_list[-1]:
            shutil.rmtree(root, ignore_errors=True)
    return rates, per_clip, root


def first_touch_missing(clips: list[dict], per_clip: list[dict], work: Path) -> list[dict]:
    """Clips the loader did not read (test clips; a dropped last batch): timed on an empty cache too."""
    seen = {p["video"] for p in per_clip}
    root = work / "cache-first-touch"
    shutil.rmtree(root, ignore_errors=True)
    cache = FrameCache(root, SHORT_SIDE, MAX_FRAMES, 1 << 50)
    out = []
    for c in clips:
        if c["video"] in seen:
            continue
        start = time.perf_counter()
        frames = cache.frames(c["path"], c["sha256"])
        seconds = time.perf_counter() - start
        entry = cache.entry(c["sha256"])
        out.append({k: c[k] for k in ("video", "width", "height", "fps", "seconds", "frames_est", "codec",
                                      "file_bytes")}
                   | {"first_touch_s": seconds, "cache_bytes": entry.stat().st_size
                      + entry.with_suffix(".json").stat().st_size, "cached_shape": list(frames.shape)})
    shutil.rmtree(root, ignore_errors=True)
    return out


def by_resolution(per_clip: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for p in per_clip:
        groups[(min(p["width"], p["height"]), p["width"] * p["height"], resolution(p))].append(p)
    rows = []
    for (_, _, res), g in sorted(groups.items()):
        frames = sum(p["frames_est"] for p in g)
        rows.append({"resolution": res, "clips": len(g), "fps_mean": float(np.mean([p["fps"] for p in g])),
                     "seconds_mean": float(np.mean([p["seconds"] for p in g])),
                     "frames_mean": frames / len(g), "file_mb_mean": float(np.mean([p["file_bytes"] for p in g])) / 1e6,
                     "first_touch_s_mean": float(np.mean([p["first_touch_s"] for p in g])),
                     "first_touch_s_max": float(max(p["first_touch_s"] for p in g)),
                     "decoded_frames_per_s": frames / sum(p["first_touch_s"] for p in g),
                     "cache_mb_per_clip": float(np.mean([p["cache_bytes"] for p in g])) / 1e6,
                     "cached_shape": g[0]["cached_shape"]})
    return rows


# -- 4: training rate ----------------------------------------------------------------------------


def train_step_rate(size: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = VideoRecognizer("resnet18", 4, SEGMENTS, 8, 0.3).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(BATCH_SIZE, SEGMENTS, 3, size, size), torch.randint(0, 4, (BATCH_SIZE,))
    times = []
    for _ in range(1 + steps):  # the first step warms up
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    step = float(np.mean(times[1:]))
    return {"input_size": size, "timed_steps": steps, "warmup_s": times[0], "step_s_mean": step,
            "step_s_min": float(min(times[1:])), "clips_per_s": BATCH_SIZE / step}


def train_epochs(clips: list[dict], root: Path, workers_list: tuple[int, ...]) -> list[dict]:
    """One real ``train()`` epoch on the batch's training clips (warm cache ``root``), per worker count."""
    refs = refs_of(clips, "train")
    params = loader_params(root, 0)
    cache = FrameCache(root, SHORT_SIDE, MAX_FRAMES, 1 << 50)
    for r in refs:  # warm already (the loader's passes filled it): loader + model are measured, not decoding
        cache.frames(r.path, r.sha256)
    decodes = cache.decodes
    out = []
    for w in workers_list:
        model = VideoRecognizer("resnet18", len({r.label for r in refs}), SEGMENTS, 8, 0.3)
        data = clip_dataset(params, refs, train=True, cache=cache)
        log(f"train() epoch, {w} workers, {len(refs)} clips")
        start = time.perf_counter()
        result = train(model, data, epochs=1, batch_size=BATCH_SIZE, lr=0.01, weight_decay=5e-4, seed=0,
                       num_workers=w, device=torch.device("cpu"))
        seconds = time.perf_counter() - start
        n = result.steps * BATCH_SIZE if len(refs) > BATCH_SIZE else len(refs)
        out.append({"workers": w, "clips": n, "steps": result.steps, "epoch_s": seconds, "clips_per_s": n / seconds,
                    "decodes_to_warm": decodes})
        log(f"  {n / seconds:.2f} clips/s")
    shutil.rmtree(root, ignore_errors=True)
    return out


# -- 5: peak memory of a pipeline batch ----------------------------------------------------------


def project_params(project: Path, landing: Path) -> dict:
    return {
        "paths": {"landing": str(landing), "store": str(project / "store"), "runs": str(project / "runs"),
                  "rejected": str(project / "rejected"), "cache": str(project / "cache")},
        "data": {"input_size": INPUT_SIZE, "short_side": SHORT_SIDE, "num_workers": 2},
        "model": {"arch": "resnet18", "num_segments": SEGMENTS},
        "train": {"epochs_first": 1, "epochs": 1, "batch_size": BATCH_SIZE, "threads": 2},
        "validation": {"min_train_per_class": 1, "min_test_per_class": 1},
        "gates": {"min_accuracy": 0.0, "min_new_accuracy": 0.0, "max_forgetting": 1.0, "max_old_drop": 1.0},
        "versioning": {"dvc": False},
        "mlflow": {"tracking_uri": f"sqlite:///{project / 'mlflow.db'}", "experiment": "input-pipeline",
                   "model_name": "input-pipeline-model"},
    }


class TreeMemory(threading.Thread):
    """Polls a process and all its descendants: the sum of their RSS every ``every`` s, PSS less often.

    ``log``: the run's output; its ``b000 <step> <seconds> s`` lines say which step is running, so
    every peak is also kept per step (the first step includes the interpreter's start).
    """

    def __init__(self, pid: int, log: Path, steps: list[str], every: float = 0.2, pss_every: int = 5):
        super().__init__(daemon=True)
        self.root, self.every, self.pss_every = psutil.Process(pid), every, pss_every
        self.log, self.steps, self.done_steps, self._text = log, steps, 0, ""
        self.peak_rss_sum = self.peak_pss_sum = self.peak_single_rss = 0
        self.peak_processes = self.samples = 0
        self.per_step: dict[str, dict[str, float]] = {}
        self.timeline: list[dict] = []  # one sample a second
        self.done = threading.Event()
        self.start_time = time.perf_counter()

    def _step(self, f) -> str:
        self._text += f.read()
        *lines, self._text = self._text.split("\n")
        self.done_steps += sum(1 for line in lines if re.match(rf"^{BATCH} (\w+)\s+[\d.]+ s$", line.strip()))
        return self.steps[min(self.done_steps, len(self.steps) - 1)]

    def run(self) -> None:
        with open(self.log, errors="replace") as f:
            while not self.done.is_set():
                try:
                    procs = [self.root] + self.root.children(recursive=True)
                except psutil.Error:
                    break
                step = self._step(f)
                rss = pss = single = 0
                with_pss = self.samples % self.pss_every == 0
                for p in procs:
                    try:
                        r = p.memory_info().rss
                        rss, single = rss + r, max(single, r)
                        if with_pss:
                            pss += p.memory_full_info().pss
                    except psutil.Error:
                        pass
                self.peak_rss_sum, self.peak_single_rss = max(self.peak_rss_sum, rss), max(self.peak_single_rss, single)
                self.peak_pss_sum = max(self.peak_pss_sum, pss)
                self.peak_processes = max(self.peak_processes, len(procs))
                peaks = self.per_step.setdefault(step, {"rss_sum": 0, "pss_sum": None, "single_rss": 0, "processes": 0})
                peaks["rss_sum"], peaks["single_rss"] = max(peaks["rss_sum"], rss), max(peaks["single_rss"], single)
                peaks["processes"] = max(peaks["processes"], len(procs))
                if with_pss:  # None: the step was over before a PSS sample fell in it
                    peaks["pss_sum"] = max(peaks["pss_sum"] or 0, pss)
                if with_pss:
                    self.timeline.append({"t": round(time.perf_counter() - self.start_time, 1), "step": step,
                                          "rss_sum_mib": rss / 2**20, "pss_sum_mib": pss / 2**20,
                                          "single_rss_mib": single / 2**20, "processes": len(procs)})
                self.samples += 1
                self.done.wait(self.every)


def pipeline_steps() -> list[str]:
    from vidcil.pipeline.runner import STEPS  # imported here: it brings MLflow

    return list(STEPS) + ["decision"]  # the decision (promote or hold) prints no timing line


def pipeline_run(name: str, stream: Path, clips: list[dict], work: Path, logs: Path) -> dict:
    """``vidcil --params params.yaml run-batch b000`` in a fresh project; its peak memory."""
    steps = pipeline_steps()
    project = work / f"project-{name}"
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir(parents=True)
    data = project_params(project, stream)
    Params.model_validate(data)  # fail here, not in the subprocess
    (project / "params.yaml").write_text(yaml.safe_dump(data))
    time_file = project / "time.txt"
    cmd = [str(VENV_BIN / "vidcil"), "--params", "params.yaml", "run-batch", BATCH]
    gnu_time = Path("/usr/bin/time")
    if gnu_time.exists():
        cmd = [str(gnu_time), "-v", "-o", str(time_file)] + cmd
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"DVC_NO_ANALYTICS": "1"}
    log(f"pipeline run {name}: {len(clips)} clips, {' '.join(cmd)}")
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"run-batch-{name}.log", "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
        mem = TreeMemory(proc.pid, logs / f"run-batch-{name}.log", steps)
        mem.start()
        rc = proc.wait()
        wall = time.perf_counter() - start
        mem.done.set()
        mem.join()
    maxrss_kb = None
    if time_file.is_file():
        shutil.copy(time_file, logs / f"time-{name}.txt")
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_file.read_text())
        maxrss_kb = int(m.group(1)) if m else None
    decision = None
    tail = (logs / f"run-batch-{name}.log").read_text().strip().splitlines()[-1:] or [""]
    if m := re.search(r"'decision': '(\w+)'", tail[0]):
        decision = m.group(1)
    row = {"run": name, "rc": rc, "decision": decision, "wall_s": wall, "clips": len(clips),
           "train_clips": sum(c["split"] == "train" for c in clips),
           "max_width_x_height": resolution(max(clips, key=lambda c: c["width"] * c["height"])),
           "seconds_total": sum(c["seconds"] for c in clips), "seconds_max": max(c["seconds"] for c in clips),
           "frames_total_est": sum(c["frames_est"] for c in clips),
           "megapixel_frames_est": sum(c["frames_est"] * c["width"] * c["height"] for c in clips) / 1e6,
           "video_bytes": sum(c["file_bytes"] for c in clips),
           "peak_rss_max_process_gib": maxrss_kb * 1024 / GIB if maxrss_kb else None,
           "peak_rss_tree_sum_gib": mem.peak_rss_sum / GIB, "peak_pss_tree_sum_gib": mem.peak_pss_sum / GIB,
           "peak_single_rss_polled_gib": mem.peak_single_rss / GIB, "peak_processes": mem.peak_processes,
           "peak_step": max(mem.per_step, key=lambda k: mem.per_step[k]["pss_sum"] or 0) if mem.per_step else None,
           "per_step_peaks_gib": {k: {m: (v / GIB if m != "processes" and v is not None else v) for m, v in p.items()}
                                  for k, p in sorted(mem.per_step.items(), key=lambda kv: steps.index(kv[0]))},
           "timeline": mem.timeline,
           "samples": mem.samples, "cache_bytes": FrameCache(project / "cache", SHORT_SIDE, MAX_FRAMES, 1).size_bytes()}
    log(f"  rc {rc}, {wall:.0f} s, peak RSS tree {row['peak_rss_tree_sum_gib']:.2f} GiB")
    shutil.rmtree(project / "store", ignore_errors=True)  # copies of the videos
    shutil.rmtree(project / "cache", ignore_errors=True)
    return row


# -- output --------------------------------------------------------------------------------------


def md_table(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    """``cols``: (header, key, format)."""
    lines = ["| " + " | ".join(h for h, _, _ in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = []
        for _, k, fmt in cols:
            v = r.get(k)
            cells.append("n/a" if v is None else format(v, fmt) if fmt else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(res: dict) -> str:
    out = [f"# Input pipeline benchmark ({res['mode']})", "",
           f"`{res['command']}` — {res['machine']['cpu_count']} CPU cores, torch {res['machine']['torch']}, "
           f"{res['machine']['platform']}; wall {res['wall_s'] / 60:.1f} min "
           f"(generation {res['generation_s'] / 60:.1f} min of it).", ""]
    made = {k: v for k, v in res.get("generation_when_made_s", {}).items() if v}
    if made:
        out += ["Streams generated once and reused (minutes when made): "
                + ", ".join(f"{k} {v / 60:.1f}" for k, v in made.items()) + ".", ""]
    b = res.get("batch")
    if b:
        out += [f"## 1. The batch: {b['clips']} clips ({b['train_clips']} train, {b['test_clips']} test), "
                f"{b['seconds_total']:.0f} s of video, {b['video_bytes'] / 1e6:.0f} MB; "
                f"720p >= 10 s: {b['hd_long']['720p_ge_10s']}, 1080p >= 10 s: {b['hd_long']['1080p_ge_10s']}", ""]
    if res.get("decode_by_resolution"):
        out += ["## 2. First touch (decode + cache write, short side 128, <= 64 frames) and cache bytes per clip",
                "", md_table(res["decode_by_resolution"], [
                    ("resolution", "resolution", ""), ("clips", "clips", "d"), ("fps mean", "fps_mean", ".1f"),
                    ("duration mean s", "seconds_mean", ".1f"), ("frames mean", "frames_mean", ".0f"),
                    ("file MB", "file_mb_mean", ".2f"), ("first touch s mean", "first_touch_s_mean", ".2f"),
                    ("max s", "first_touch_s_max", ".2f"), ("decoded frames/s", "decoded_frames_per_s", ".0f"),
                    ("cache MB/clip", "cache_mb_per_clip", ".2f"), ("cached shape", "cached_shape", "")]), ""]
        d = res["decode_total"]
        out += [f"All {d['clips']} clips: first touch {d['first_touch_s_total']:.0f} s in all "
                f"({d['first_touch_s_mean']:.2f} s/clip mean), cache {d['cache_bytes_total'] / 1e6:.0f} MB "
                f"({d['cache_bytes_mean'] / 1e6:.2f} MB/clip).", ""]
    if res.get("data_rate"):
        out += [f"## 3. Training loader data rate (batch {BATCH_SIZE}, T = {SEGMENTS}, input {INPUT_SIZE}, "
                "one full pass each)", "", md_table(res["data_rate"], [
                    ("workers", "workers", "d"), ("started", "loader_workers", "d"), ("clips", "clips", "d"),
                    ("cold s", "cold_s", ".1f"),
                    ("cold clips/s", "cold_clips_per_s", ".2f"), ("warm s", "warm_s", ".2f"),
                    ("warm clips/s", "warm_clips_per_s", ".1f")]), ""]
    if res.get("train_step"):
        out += ["## 4. Training rate, ResNet-18-TSM, T = 8, batch 8, CPU, 2 threads", "",
                md_table(res["train_step"], [("input", "input_size", "d"), ("timed steps", "timed_steps", "d"),
                                             ("s/step", "step_s_mean", ".2f"), ("clips/s", "clips_per_s", ".2f")]), ""]
        if res.get("train_epoch"):
            out += ["Real `train()` epochs on the batch's training clips (warm cache, input 112): loader and "
                    "model share the 2 cores.", "", md_table(res["train_epoch"], [
                        ("workers", "workers", "d"), ("clips", "clips", "d"), ("epoch s", "epoch_s", ".1f"),
                        ("clips/s", "clips_per_s", ".2f")]), ""]
        r = res.get("ratios", {})
        if r:
            out += [f"- warm data rate, 2 workers, measured alone / training clips/s at 112: "
                    f"**{r['warm2_over_train112']:.1f}x** (target >= 1.5x)",
                    f"- `train()` epoch clips/s, 2 workers / synthetic-tensor training clips/s at 112: "
                    f"**{r['epoch_w2_over_train112']:.2f}** (1.0: the loader costs training nothing)",
                    f"- `train()` epoch clips/s, 0 workers / synthetic: **{r['epoch_w0_over_train112']:.2f}**", ""]
    if res.get("pipeline_runs"):
        out += ["## 5. Peak memory of `vidcil run-batch b000` (fresh process and project; data workers 2, "
                "1 epoch, input 112)", "", md_table(res["pipeline_runs"], [
                    ("run", "run", ""), ("rc", "rc", "d"), ("decision", "decision", ""), ("clips", "clips", "d"),
                    ("largest", "max_width_x_height", ""), ("longest s", "seconds_max", ".1f"),
                    ("video s", "seconds_total", ".0f"), ("Mpixel-frames", "megapixel_frames_est", ".0f"),
                    ("wall s", "wall_s", ".0f"), ("peak RSS, one process GiB", "peak_rss_max_process_gib", ".2f"),
                    ("peak RSS, tree sum GiB", "peak_rss_tree_sum_gib", ".2f"),
                    ("peak PSS, tree sum GiB", "peak_pss_tree_sum_gib", ".2f"),
                    ("processes", "peak_processes", "d"), ("peak PSS in", "peak_step", "")]), "",
                "One process: `/usr/bin/time -v` maximum resident set size (the largest single process of the "
                "tree that was waited for). Tree sum: psutil, every 0.2 s, RSS of the process and all its "
                "children summed (counts shared pages and memory-mapped cache pages once per process: an upper "
                "bound); PSS likewise every 1 s (shared pages split between processes). Target <= 3 GB.", ""]
        runs = res["pipeline_runs"]
        steps = list(dict.fromkeys(k for r in runs for k in r.get("per_step_peaks_gib", {})))
        steps = [k for k in res.get("pipeline_steps", []) if k in steps] + [k for k in steps
                                                                          if k not in res.get("pipeline_steps", [])]

        def cell(peaks: dict | None) -> str | None:
            if peaks is None:
                return None
            pss = "-" if peaks["pss_sum"] is None else f"{peaks['pss_sum']:.2f}"
            return f"{pss} / {peaks['single_rss']:.2f}"

        rows = [{"step": k} | {r["run"]: cell(r.get("per_step_peaks_gib", {}).get(k)) for r in runs} for k in steps]
        out += ["Peak per step, GiB: tree PSS sum / largest single process RSS (polled; '-': the step was "
                "over before a PSS sample, 'n/a': over before any sample)", "",
                md_table(rows, [("step", "step", "")] + [(r["run"], r["run"], "") for r in runs]), ""]
    if res.get("notes"):
        out += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/input_pipeline"))
    parser.add_argument("--landing", type=Path, default=None,
                        help="where streams are kept and reused (default: ~/.cache/vidcil/input_pipeline)")
    parser.add_argument("--quick", action="store_true", help="a few small clips: a smoke test")
    parser.add_argument("--skip-variants", action="store_true", help="no long / large memory variants")
    args = parser.parse_args()
    wall_start = time.perf_counter()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    landing = args.landing or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vidcil" / "input_pipeline"
    landing = landing.resolve()
    prof = profiles(args.quick)
    res: dict = {
        "mode": "quick" if args.quick else "full",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "platform": platform.platform(),
                    "memory_gib": psutil.virtual_memory().total / GIB, "pyav": av.__version__,
                    "load_average_at_start": os.getloadavg()},
        "profiles": {k: asdict(v) for k, v in prof.items()},
        "settings": {"short_side": SHORT_SIDE, "max_frames": MAX_FRAMES, "input_size": INPUT_SIZE,
                     "num_segments": SEGMENTS, "batch_size": BATCH_SIZE},
        "generation_s": 0.0, "phase_s": {}, "notes": [],
        "pipeline_steps": pipeline_steps(),
    }

    def save() -> None:
        res["wall_s"] = time.perf_counter() - wall_start
        res["machine"]["load_average_at_end"] = os.getloadavg()
        (args.out / "results.json").write_text(json.dumps(res, indent=1))
        (args.out / "results.md").write_text(report(res))

    def phase(name: str, start: float) -> None:
        res["phase_s"][name] = time.perf_counter() - start
        res.setdefault("phase_load_average", {})[name] = os.getloadavg()  # other work on the machine
        save()

    # 1. the batch
    t = time.perf_counter()
    if (landing / BATCH / "labels.csv").is_file():  # a stream given as it is
        stream, gen = landing, 0.0
        variant_root = landing / "variants"
        res["notes"].append(f"main batch: the stream at {landing} as given (not generated here)")
    else:
        stream, gen = ensure_stream(landing, "main", prof["main"])
        variant_root = landing
    res["generation_s"] += gen
    res["streams"] = {"main": str(stream)}
    res["generation_when_made_s"] = {"main": made_in(stream)}
    clips = clip_table(stream)
    hd = hd_long_counts(clips)
    res["batch"] = {"clips": len(clips), "train_clips": sum(c["split"] == "train" for c in clips),
                    "test_clips": sum(c["split"] == "test" for c in clips), "hd_long": hd,
                    "seconds_total": sum(c["seconds"] for c in clips), "video_bytes": sum(c["file_bytes"] for c in clips),
                    "generation_s": gen}
    res["clips"] = [{k: v for k, v in c.items() if k != "path"} for c in clips]
    log(f"batch: {len(clips)} clips; 720p >= 10 s: {hd['720p_ge_10s']}, 1080p >= 10 s: {hd['1080p_ge_10s']}")
    if not args.quick:
        assert len(clips) >= 100, f"{len(clips)} clips: want >= 100"
        assert hd["720p_ge_10s"] >= 1 and hd["1080p_ge_10s"] >= 1, f"no long HD clips: {hd}"
    phase("batch", t)

    with tempfile.TemporaryDirectory(prefix="vidcil-input-pipeline-") as tmp:
        work = Path(tmp)
        # 2 + 3. first touch per clip (in the 0-worker cold pass), cache bytes, loader data rates
        t = time.perf_counter()
        rates, per_clip, warm_cache = data_rates(clips, work, (0, 1, 2))
        res["data_rate"] = rates
        phase("data_rate", t)
        t = time.perf_counter()
        per_clip += first_touch_missing(clips, per_clip, work)
        res["first_touch_per_clip"] = per_clip
        res["decode_by_resolution"] = by_resolution(per_clip)
        res["decode_total"] = {"clips": len(per_clip), "first_touch_s_total": sum(p["first_touch_s"] for p in per_clip),
                               "first_touch_s_mean": float(np.mean([p["first_touch_s"] for p in per_clip])),
                               "cache_bytes_total": sum(p["cache_bytes"] for p in per_clip),
                               "cache_bytes_mean": float(np.mean([p["cache_bytes"] for p in per_clip]))}
        res["notes"].append("first touch of the training clips was timed inside the 0-worker cold loader pass "
                            "(main process, one clip at a time, nothing else running in the benchmark); the "
                            "others (test clips, a dropped last batch) on an empty cache after it")
        phase("first_touch_rest", t)

        # 4. training rate, alone and with the loader
        t = time.perf_counter()
        steps = 1 if args.quick else 3
        res["train_step"] = [train_step_rate(s, steps) for s in (112, 224)]
        log("train step clips/s: " + ", ".join(f"{r['input_size']}: {r['clips_per_s']:.2f}" for r in res["train_step"]))
        res["train_epoch"] = train_epochs(clips, warm_cache, (0, 2))
        t112 = res["train_step"][0]["clips_per_s"]
        warm2 = next(r["warm_clips_per_s"] for r in rates if r["workers"] == 2)
        epochs = {r["workers"]: r["clips_per_s"] for r in res["train_epoch"]}
        res["ratios"] = {"warm2_over_train112": warm2 / t112, "epoch_w2_over_train112": epochs[2] / t112,
                         "epoch_w0_over_train112": epochs[0] / t112}
        phase("train", t)

        # 5. peak memory of whole pipeline batches
        t = time.perf_counter()
        runs = res["pipeline_runs"] = [pipeline_run("batch", stream, clips, work, args.out / "logs")]
        save()
        if not args.skip_variants:
            for name in ("base", "long", "large"):
                v_stream, gen = ensure_stream(variant_root, name, prof[name])
                res["generation_s"] += gen
                res["streams"][name] = str(v_stream)
                res["generation_when_made_s"][name] = made_in(v_stream)
                v_clips = clip_table(v_stream)
                res[f"clips_{name}"] = [{k: v for k, v in c.items() if k != "path"} for c in v_clips]
                runs.append(pipeline_run(name, v_stream, v_clips, work, args.out / "logs"))
                save()
        phase("pipeline_runs", t)
    b = prof["base"]
    res["notes"] += [
        f"shrunk to fit the time budget: pipeline runs train 1 epoch; the memory variants (base, long, large) "
        f"are {b.class_batches * 4} classes x ({b.train_per_class} train + {b.test_per_class} test) clips of the "
        f"batch's profile (same seed), not the whole batch; training-step rates average {steps} timed steps "
        "after 1 warm-up step",
        "clip_loader starts at most (batches - 1) workers, so a set of <= 8 clips (the variants' 4 training and "
        "4 test clips) is read in the main process: the variants' runs have no worker processes, the batch's "
        "training has 2",
        "streams are generated once (deterministic given the profile and the generator's code) and reused "
        "from --landing; a stream made by an older generator is reused as it is",
        "the machine may be shared with other work: load averages per phase are in phase_load_average; the "
        "rates are of this run, not best-of",
    ]
    save()
    print(report(res))


if __name__ == "__main__":
    main()
