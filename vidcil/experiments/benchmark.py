"""``vidcil benchmark``: every method on the same stream, seeds and byte budget, in one run.

Writes ``<out>/benchmark.json`` (every run, batch by batch, and the summary), ``<out>/benchmark.md``
(the tables and the targets) and ``<out>/plots/*.png``. ``quick`` is a smoke run (a tiny bundled
stream, one seed, few epochs) that checks the whole path in minutes; its numbers mean nothing.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vidcil.io import plots
from vidcil.config import Params
from vidcil.io.moving_digits import BatchSpec, default_stream, generate_stream
from vidcil.core.learner import batch_epochs
from vidcil.experiments import report
from vidcil.experiments.methods import ABLATIONS, EXTENSIONS, METHODS
from vidcil.experiments.runner import BenchmarkRunner, load_stream, scratch_dir
from vidcil.io.inputs import frame_cache
from vidcil.io.progress import hms
from vidcil.io.validation import validation_rules

console = Console(stderr=True, highlight=False, soft_wrap=True)


def quick_params(params: Params) -> Params:
    """Small settings for the smoke run: a 4-frame model, 2 + 1 epochs."""
    return params.model_copy(update={
        "model": params.model.model_copy(update={"num_segments": 4}),
        "train": params.train.model_copy(update={"epochs_first": 2, "epochs": 1}),
        "memory": params.memory.model_copy(update={"budget_bytes": 60_000, "candidates_per_class": 3}),
        "data": params.data.model_copy(update={"input_size": 32, "short_side": 32}),  # its 32 px stream
    })


def benchmark_params(params: Params, quick: bool = False) -> Params:
    """``params`` with the benchmark's own byte budget, clip length and frame size, for every method."""
    params = params.typed().model_copy(update={
        "memory": params.memory.model_copy(update={"budget_bytes": params.experiments.memory_budget_bytes}),
        "model": params.model.model_copy(update={"num_segments": params.experiments.num_segments
                                                  or params.model.num_segments}),
        "data": params.data.model_copy(update={"input_size": params.experiments.input_size,
                                               "short_side": params.experiments.input_size})})
    return quick_params(params) if quick else params


def bundled_stream(params: Params, quick: bool, landing: Path, kind: str = "digits") -> Path:
    """Write a bundled stream of the benchmark (``kind``: moving ``digits`` or random-dot ``dots``
    flows; quick: a tiny one, 4 + 2 classes and a shift batch) to ``landing``."""
    from vidcil.io.dots import DotBatch, dots_stream, generate_dots_stream

    b = params.experiments.stream
    if kind not in ("digits", "dots"):
        raise ValueError(f"unknown bundled stream {kind!r}; choose digits or dots")
    if quick:
        first, second = ((("slide_right", "slide_down", "rotate_cw", "zoom_in"), ("slide_left", "slide_up"))
                         if kind == "digits" else (("drift_right", "drift_down", "spin_cw", "expand"),
                                                   ("drift_left", "drift_up")))
        specs = ([BatchSpec("b000", first, 5, 2), BatchSpec("b001", second, 5, 2),
                  BatchSpec("b002", first + second, 4, 2, noise=0.07, background_cells=8)] if kind == "digits" else
                 [DotBatch("b000", first, 5, 2), DotBatch("b001", second, 5, 2),
                  DotBatch("b002", first + second, 4, 2, noise=0.06, coherence=(0.55, 0.75))])
        size, frames = 32, 8
    else:
        make = default_stream if kind == "digits" else dots_stream
        specs = make(b.class_batches, b.shift_batch, train_per_class=b.train_per_class,
                     test_per_class=b.test_per_class, shift_train_per_class=b.shift_train_per_class,
                     shift_test_per_class=b.shift_test_per_class)
        size, frames = b.size, b.frames
    missing = [s.batch_id for s in specs if not (landing / s.batch_id / "labels.csv").is_file()]
    if missing:  # deterministic: batches already written are the same bytes
        write = generate_stream if kind == "digits" else generate_dots_stream
        write(landing, specs, seed=b.seed, n_frames=frames, size=size, fps=b.fps, only=missing)
    return landing


def bundled_landing(params: Params, quick: bool, kind: str = "digits") -> Path:
    """Where the benchmark keeps a bundled stream: ``experiments.landing`` (digits), ``-dots``, ``-quick``."""
    landing = params.experiments.landing
    suffix = ("-dots" if kind == "dots" else "") + ("-quick" if quick else "")
    return landing.with_name(landing.name + suffix)


def run_benchmark(params: Params, out: Path, *, landing: Path | None = None, seeds: list[int] | None = None,
                  quick: bool = False, ablation: bool = True, single_frame: bool = True,
                  methods: list[str] | None = None, stream: str = "digits") -> dict:
    """``methods``: names from ``METHODS``, ``EXTENSIONS`` and ``ABLATIONS`` (default: ``METHODS``, the
    ablation and the single-frame model; named methods run alone)."""
    known = {m.name: m for m in METHODS + EXTENSIONS + ABLATIONS}
    if methods is not None:
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {', '.join(known)}")
        ablation = single_frame = False
    chosen = [known[m] for m in methods] if methods is not None else list(METHODS)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(params.train.threads)
    params = benchmark_params(params, quick)
    e = params.experiments
    seeds = seeds or ([0] if quick else e.seeds)
    ablation_seeds = [s for s in seeds if quick or s in e.ablation_seeds] if ablation else []
    if landing is None:
        landing = bundled_stream(params, quick, bundled_landing(params, quick, stream), stream)
    console.print(f"stream: {landing}")
    stream = load_stream(landing, validation_rules(params), out / "validation", frame_cache(params),
                         on_batch=lambda line: console.print(f"  {line}"))
    runs = {seed: chosen + (list(ABLATIONS) if seed in ablation_seeds else []) for seed in seeds}
    if len(stream.batches) < 2:
        raise ValueError(f"{landing}: a continual-learning benchmark needs at least 2 accepted batches")

    p, later = params, len(stream.batches) - 1
    bases = len({m.params(p).model.model_dump_json() for m in chosen})  # batch-0 models
    def epochs(m) -> int:  # every batch after the first; the first student may have a new backbone
        q = m.params(p)
        if m.joint:
            return q.train.epochs_first * later
        first = batch_epochs(q.model.arch, q.student.arch or q.model.arch, q.train)
        return first + q.train.epochs * (later - 1)

    total = sum(p.train.epochs_first * (bases + single_frame) + sum(epochs(m) for m in methods)  # progress
                for methods in runs.values())
    results: dict[str, dict[int, dict]] = {m.name: {} for m in chosen + list(ABLATIONS if ablation_seeds else ())}
    about = {  # what a result says about its stream and settings (partial.json has it too)
        "stream": {"landing": str(landing), "batches": [b.batch_id for b in stream.batches],
                   "classes": stream.classes,
                   "batch_classes": [sorted(set(b.rows["label"])) for b in stream.batches], "rejected": stream.rejected,
                   "train_videos": [int((b.rows["split"] == "train").sum()) for b in stream.batches],
                   "test_videos": [int((b.rows["split"] == "test").sum()) for b in stream.batches]},
        "settings": {"quick": quick, **{k: v for k, v in p.model_dump(mode="json").items()
                                        if k in ("model", "train", "distil", "memory")},
                     "device": "cuda" if torch.cuda.is_available() else f"cpu ({p.train.threads} threads)"},
    }
    single: dict[str, list[float]] = {"single_frame": [], "temporal": []}
    start = time.perf_counter()
    work = scratch_dir()
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("benchmark", total=total)

            def advance() -> None:  # one epoch done; off a terminal (logs) a plain line, as training does
                bar.advance(task)
                if not console.is_terminal:
                    done = bar.tasks[0]
                    print(f"[vidcil] benchmark {done.description}: epoch {int(done.completed)}/{total} "
                          f"of the benchmark, {hms(time.perf_counter() - start)} elapsed", file=sys.stderr, flush=True)

            for seed in seeds:
                runner = BenchmarkRunner(stream, params, seed, work / f"seed{seed}")
                for method in runs[seed]:
                    bar.update(task, description=f"seed {seed} {method.name}")
                    run = runner.run(method, on_epoch=advance)
                    results[method.name][seed] = {"metrics": run.metrics(), "matrix": run.matrix(),
                                                  "batches": [vars(b) for b in run.batches]}
                    # A crash or a kill keeps what is done, in the result's shape: merge_benchmarks.py makes a
                    # table of the seeds every method finished.
                    (out / "partial.json").write_text(json.dumps(about | {
                        "seeds": seeds, "ablation_seeds": ablation_seeds, "ablation": [a.name for a in ABLATIONS],
                        "wall_seconds": round(time.perf_counter() - start, 1), "runs": results}))
                    m = run.metrics()
                    console.print(f"seed {seed} {method.name:16s} final {m['final_accuracy']:.3f}  "
                                  f"forgetting {m['mean_forgetting']:.3f}  memory {m['memory_bytes'] / 1e3:.0f} kB  "
                                  f"steps {m['optimizer_steps']}  {m['wall_seconds']:.0f} s")
                if single_frame:
                    bar.update(task, description=f"seed {seed} single frame")
                    single["single_frame"].append(runner.single_frame(on_epoch=advance))
                    single["temporal"].append(results["joint"][seed]["metrics"]["final_accuracy"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    summary = report.summarize(results)
    on_ablation_seeds = {m: {s: r for s, r in results[m].items() if s in ablation_seeds}
                         for m in ["tsd"] + [a.name for a in ABLATIONS] if ablation_seeds}
    ablation_summary = report.summarize(on_ablation_seeds)  # TSD on the same seeds as its ablations
    compute = report.compute_comparison(results)
    single_summary = {k: report.mean_std(v) for k, v in single.items()} if single_frame else None
    result = about | {
        "seeds": seeds, "ablation_seeds": ablation_seeds, "wall_seconds": round(time.perf_counter() - start, 1),
        "runs": results, "summary": summary, "ablation_summary": ablation_summary, "compute": compute, "single_frame": single_summary,
    }
    k = report.last_new_class_batch(result)  # forgetting is compared before batches that re-teach every class
    after = (result["stream"]["batches"][k], report.at_batch(results, k)) if k is not None else None
    result["targets"] = report.targets(summary, ablation_summary, compute, single_summary, after)
    write(result, out)
    (out / "partial.json").unlink(missing_ok=True)
    return result


def write(result: dict, out: Path) -> None:
    (out / "plots").mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(result, indent=1))
    (out / "benchmark.md").write_text(report.markdown(result))
    plots.save(report.accuracy_curves(result), out / "plots" / "accuracy_vs_batch.png")
    if "tsd" in result["runs"]:
        plots.save(report.tsd_matrix(result), out / "plots" / "tsd_accuracy_matrix.png")
