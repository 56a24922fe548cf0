"""The size and CPU speed of each method's final model, measured alone on a quiet machine.

    python benchmarks/model_latency.py [--params params.yaml] [--methods tsd r50_to_mnv3_replay ...]
                                       [--sizes 48 112 224] [--frames 4] [--classes 10] [--out benchmarks/results/model_latency]

``vidcil benchmark`` measures the latency of each method's last model too, but between trainings,
while whatever else runs on the machine competes for it. Here the same models (built as the
pipeline builds them: the batch-0 model from ``model``, then the student of ``student``, widened to
``--classes``) and the same timing (:func:`vidcil.experiments.runner.cpu_latency_ms`: one clip,
median of 20 after 3 warm-up calls, ``train.threads`` threads) run one after another and nothing
else, at several input sizes. Prints a markdown table; writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import torch

from vidcil.config import Params
from vidcil.core.learner import make_student
from vidcil.experiments.methods import EXTENSIONS, METHODS
from vidcil.experiments.runner import cpu_latency_ms

DEFAULT = ["tsd", "tsd_nextvlad", "tsd_sparse_shufflenet", "r50_tsd", "r50_to_mnv3_replay", "r50_to_mnv3_encoder"]


def final_model(params: Params, classes: int, frames: int):
    """The model a method's stream ends with: its batch-0 model, then its student (if another arch)."""
    kw = {"mean": params.data.mean, "std": params.data.std, "seed": 0}
    first = make_student(None, max(2, classes // 2), model=params.model, num_segments=frames, **kw)
    return make_student(first, classes, model=params.model, student=params.student, **kw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--methods", nargs="+", default=DEFAULT)
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help="input sizes in px (default: experiments.input_size, 112, 224)")
    ap.add_argument("--frames", type=int, default=None, help="frames per clip (default: experiments.num_segments)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/model_latency"))
    args = ap.parse_args(argv)
    base = Params.load(args.params)
    sizes = args.sizes or [base.experiments.input_size, 112, 224]
    frames = args.frames or base.experiments.num_segments
    torch.set_num_threads(base.train.threads)
    known = {m.name: m for m in METHODS + EXTENSIONS}
    unknown = [m for m in args.methods if m not in known]
    if unknown:
        ap.error(f"unknown methods {unknown}; known: {', '.join(known)}")
    rows = []
    for name in args.methods:
        p = known[name].params(base)
        model = final_model(p, args.classes, frames)
        row = {"method": name, "label": known[name].title, "arch": model.arch, "head": p.model.head.kind,
               "frames": model.num_segments, "parameters": sum(t.numel() for t in model.parameters()),
               "trainable": sum(t.numel() for t in model.parameters() if t.requires_grad)}
        for size in sizes:
            row[f"cpu_ms_{size}"] = round(cpu_latency_ms(model, size), 2)
            print(f"{name} {size} px: {row[f'cpu_ms_{size}']} ms", file=sys.stderr, flush=True)
        rows.append(row)
    header = ["method", "backbone", "head", "params (M)"] + [f"CPU ms / clip at {s} px" for s in sizes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [f"| {r['label']} | {r['arch']} | {r['head']} | {r['parameters'] / 1e6:.2f} | "
              + " | ".join(f"{r[f'cpu_ms_{s}']:.1f}" for s in sizes) + " |" for r in rows]
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "threads": base.train.threads, "torch": torch.__version__, "frames": rows[0]["frames"] if rows else None}
    text = "\n".join(lines) + (f"\n\nOne clip of {machine['frames']} frames, median of 20 calls after 3 warm-up calls, "
                               f"{machine['threads']} threads on a {machine['cores']}-core machine (torch {machine['torch']}).\n")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"command": sys.argv, "machine": machine, "rows": rows}, indent=1))
    (args.out / "results.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
