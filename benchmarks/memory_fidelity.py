"""Does the memory keep what the champion recognises? Each frame policy's exemplars, scored by the model
that chose them, replayed from their shards vs from the same videos in full.

    python benchmarks/memory_fidelity.py [--params params.yaml] [--landing DIR | --stream digits|dots]
                                         [--policies fit fit_f4 ...] [--seeds 0] [--out benchmarks/results/memory_fidelity/NAME]

Per seed, the benchmark's batch-0 model is trained once (:meth:`BenchmarkRunner.base_model`, the
learner as the pipeline runs it); then, per frame policy (``--policies``, of :data:`POLICIES`:
``memory.frames`` options), the memory for the next batch is built as the benchmark builds it
(confidence selection, the benchmark's byte budget, :meth:`BenchmarkRunner._next_memory`) and the
model scores (a) the clips the memory replays — its shards, sampled as the learner samples them — and
(b) the same videos in full. A memory whose shards the champion no longer recognises teaches a
student something else than the old classes: (a) far below (b) is a memory that loses the motion.

Prints a markdown table (videos kept, frames per video, bytes, accuracy on shards and on the full
videos, mean with a 95 % t interval over seeds); writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from vidcil.config import Params
from vidcil.core.training import predict_proba
from vidcil.experiments.benchmark import benchmark_params, bundled_landing, bundled_stream
from vidcil.experiments.methods import TSD, Method
from vidcil.experiments.report import mean_std
from vidcil.experiments.runner import BenchmarkRunner, load_stream, scratch_dir
from vidcil.io.inputs import clip_dataset, frame_cache
from vidcil.io.memory_store import empty_memory
from vidcil.io.validation import validation_rules

POLICIES: dict[str, dict | None] = {
    "fit": None,  # the default (params.yaml: memory.frames)
    "fit_f2": {"kind": "fit", "frames": 2},
    "fit_f4": {"kind": "fit", "frames": 4},
    "fit_t02": {"kind": "fit", "threshold": 0.02},  # a lower keyframe threshold floor
    "fit_t0": {"kind": "fit", "threshold": 0.0},  # every frame a keyframe until the budget says otherwise
    "uniform8": {"kind": "uniform", "count": 8},  # TCD's memory: 8 evenly spaced frames
    "keyframes": {"kind": "keyframes", "threshold": 0.06},  # a fixed threshold: refuses when over budget
}


def fidelity(runner: BenchmarkRunner, params: Params, name: str, frames: dict | None, model) -> dict:
    p = Method(name, name, distil=TSD, frames=frames).params(params)
    memory = empty_memory(runner.workdir / name / "none", p.memory.budget_bytes, 0.06)
    try:
        memory = runner._next_memory(p, name, memory, model, 1)
    except ValueError as e:  # a fixed threshold over budget
        return {"refused": str(e)}
    refs = runner._memory_refs(memory)
    shards = clip_dataset(p, refs, train=False, cache=runner.stream.cache)
    kept = set(memory.entries.video)
    full = clip_dataset(p, [r for r in runner.stream.refs(runner.stream.batches[0], "train") if r.video in kept],
                        train=False, cache=runner.stream.cache)
    return {"videos": len(refs), "frames_per_video": float(np.mean([len(k) for k in memory.entries.keyframes])),
            "bytes": int(memory.bytes_on_disk),
            "acc_shards": float((predict_proba(model, shards).argmax(1) == shards.labels).mean()),
            "acc_full": float((predict_proba(model, full).argmax(1) == full.labels).mean())}


def table(rows: dict[str, dict]) -> str:
    out = ["| frames policy | videos kept | frames / video | kB | champion on the shards | on the same videos in full |",
           "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if r.get("refused"):
            out.append(f"| {name} | refused: {r['refused'][:120]} | | | | |")
            continue
        cell = lambda k, f="{:.3f}": f"{f.format(r[k]['mean'])} ± {f.format(r[k]['ci95'])}"  # noqa: E731
        out.append(f"| {name} | {cell('videos', '{:.1f}')} | {cell('frames_per_video', '{:.1f}')} | "
                   f"{r['bytes']['mean'] / 1e3:.0f} | {cell('acc_shards')} | {cell('acc_full')} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--landing", type=Path, default=None, help="a landing zone (default: the bundled --stream)")
    ap.add_argument("--stream", choices=("digits", "dots"), default="digits")
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out = args.out or Path("benchmarks/results/memory_fidelity") / (args.landing.name if args.landing else args.stream)
    params = benchmark_params(Params.load(args.params))
    torch.set_num_threads(params.train.threads)
    landing = args.landing or bundled_stream(params, False, bundled_landing(params, False, args.stream), args.stream)
    work = scratch_dir()  # validation reports (tens of MB), memories, models: not with the results
    start, per_seed = time.perf_counter(), {}
    try:
        stream = load_stream(landing, validation_rules(params), work / "validation", frame_cache(params),
                             on_batch=lambda line: print(f"  {line}", flush=True))
        for seed in args.seeds:
            runner = BenchmarkRunner(stream, params, seed, work / f"seed{seed}")
            model, first = runner.base_model()
            print(f"seed {seed}: batch-0 model, accuracy {first.accuracy_all_seen:.3f}", flush=True)
            for name in args.policies:
                r = per_seed.setdefault(name, {})[seed] = fidelity(runner, params, name, POLICIES[name], model)
                print(f"seed {seed} {name}: {r}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = {}
    for name, seeds in per_seed.items():
        refused = [r["refused"] for r in seeds.values() if "refused" in r]
        rows[name] = {"refused": refused[0]} if refused else {
            k: mean_std([r[k] for r in seeds.values()]) for k in ("videos", "frames_per_video", "bytes", "acc_shards", "acc_full")}
    md = (f"## Memory fidelity: {landing.name}, budget {params.memory.budget_bytes / 1e3:.0f} kB, "
          f"{params.model.num_segments} frames per clip, seeds {', '.join(map(str, args.seeds))}\n\n{table(rows)}\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps({
        "stream": str(landing), "budget_bytes": params.memory.budget_bytes, "num_segments": params.model.num_segments,
        "seeds": args.seeds, "per_seed": per_seed, "rows": rows, "wall_seconds": time.perf_counter() - start,
        "machine": platform.platform(), "torch": torch.__version__}, indent=1))
    print(md)
    print(f"wall time {time.perf_counter() - start:.0f} s; written: {out}/results.json, results.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
