"""Which learner learns the motion: each model choice trained jointly on every class of a stream.

    python benchmarks/joint_learner.py [--params params.yaml] [--landing DIR | --stream digits|dots] [--models tsm_r18 r2plus1d ...]
                                       [--seeds 0 1 2] [--frames 4 8] [--out benchmarks/results/joint_learner/NAME]

Each model choice (``--models``, of :data:`MODELS`: ``params.model`` options over the base's) is
trained as the pipeline learns a first batch — the same learner (:meth:`BenchmarkRunner.joint`:
``make_student`` + ``learn_batch``, ``epochs_first`` at most, stopped by the validation split carved
from the training clips) — but on every batch's training clips at once, then scored on every test
clip: the upper bound a continual learner with that model can approach. The stream and its
settings are the benchmark's (``experiments``: frame size, clip length; default the bundled
stream); ``--frames`` overrides the clip length. A single-frame model of the base is the control:
the class lives in the motion, so it must stay near chance.

Prints a markdown table (accuracy per seed, mean with a 95 % t interval, steps, seconds,
parameters); writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from vidcil.config import Params
from vidcil.experiments.report import mean_std
from vidcil.experiments.benchmark import benchmark_params, bundled_landing, bundled_stream
from vidcil.experiments.runner import BenchmarkRunner, load_stream, scratch_dir
from vidcil.io.inputs import frame_cache
from vidcil.io.validation import validation_rules

MODELS: dict[str, dict] = {
    "tsm_r18": {"arch": "resnet18", "input": "rgb"},  # TSM ResNet-18 on the frames
    "tsm_r18_diff": {"arch": "resnet18", "input": "diff"},  # ... on frame differences (TSN's RGB diff)
    "tsm_mnv3s": {"arch": "mobilenet_v3_small", "input": "rgb"},  # a small 2D backbone with shifts
    "r2plus1d": {"arch": "r2plus1d_10", "input": "rgb"},  # (2+1)D: temporal convolutions in every layer
    "r2plus1d_diff": {"arch": "r2plus1d_10", "input": "diff"},
    "single_frame": {"arch": "resnet18", "input": "rgb", "num_segments": 1},  # the control: no motion at all
}


def with_model(params: Params, options: dict, frames: int | None) -> Params:
    model = params.model.model_dump() | options
    if frames and "num_segments" not in options:
        model["num_segments"] = frames
    return Params.model_validate(params.model_dump() | {"model": model}, context={"plugins": True})


def table(rows: list[dict]) -> str:
    out = ["| model | frames | input | accuracy (mean ± 95 % CI) | per seed | optimizer steps | s / run | parameters |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, ci = r["accuracy"]["mean"], r["accuracy"]["ci95"]
        out.append(f"| {r['model']} ({r['arch']}) | {r['frames']} | {r['input']} | {m:.3f} ± {ci:.3f} | "
                   f"{' '.join(f'{a:.3f}' for a in r['per_seed'])} | {r['steps']:.0f} | {r['seconds']:.0f} | "
                   f"{r['parameters'] / 1e6:.1f} M |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--landing", type=Path, default=None, help="a stream in the incoming-batch contract "
                                                              "(default: the benchmark's bundled --stream)")
    ap.add_argument("--stream", choices=("digits", "dots"), default="digits")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[None],
                    help="frames per clip (default: experiments.num_segments)")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results/joint_learner/<stream>")
    args = ap.parse_args(argv)
    params = benchmark_params(Params.load(args.params))
    torch.set_num_threads(params.train.threads)
    landing = args.landing or bundled_stream(params, False, bundled_landing(params, False, args.stream), args.stream)
    out = args.out or Path("benchmarks/results/joint_learner") / Path(landing).name
    out.mkdir(parents=True, exist_ok=True)
    print(f"stream: {landing}", file=sys.stderr, flush=True)
    work = scratch_dir()  # validation reports (tens of MB) and scratch: not with the results
    stream = load_stream(landing, validation_rules(params), work / "validation", frame_cache(params),
                         on_batch=lambda line: print(f"  {line}", file=sys.stderr, flush=True))
    rows = []
    for frames in args.frames:
        for name in args.models:
            if name == "single_frame" and frames is not None and frames != args.frames[0]:
                continue  # one control is enough
            p = with_model(params, MODELS[name], frames)
            runs = []
            for seed in args.seeds:
                runner = BenchmarkRunner(stream, p, seed, work / f"{name}-{seed}")
                start, done = time.perf_counter(), []

                def epoch() -> None:  # a plain line per epoch: progress in a terminal and in a log
                    done.append(1)
                    print(f"[joint] {name} seed {seed}: epoch {len(done)}/{p.train.epochs_first} at most, "
                          f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

                r = runner.joint(p, on_epoch=epoch)
                runs.append(r)
                print(f"[joint] {name} T={p.model.num_segments} seed {seed}: accuracy {r['accuracy']:.3f} on "
                      f"{r['classes']} classes, {r['steps']} steps, {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
            rows.append({"model": name, "arch": p.model.arch, "input": p.model.input, "frames": p.model.num_segments,
                         "seeds": args.seeds, "per_seed": [r["accuracy"] for r in runs],
                         "accuracy": mean_std([r["accuracy"] for r in runs]),
                         "steps": sum(r["steps"] for r in runs) / len(runs),
                         "seconds": sum(r["seconds"] for r in runs) / len(runs),
                         "parameters": runs[0]["parameters"], "classes": runs[0]["classes"],
                         "train_clips": runs[0]["train_clips"], "chance": 1 / runs[0]["classes"]})
    md = (f"# Joint training on {landing} ({rows[0]['classes']} classes, {rows[0]['train_clips']} training clips, "
          f"chance {rows[0]['chance']:.3f})\n\n{table(rows)}\n\n"
          f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{params.train.threads} threads; frame size {params.data.input_size} px; at most "
          f"{params.train.epochs_first} epochs (train.convergence decides).\n")
    print(md)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps({"landing": str(landing), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
