"""``vidcil``: the command line for people (and the demo)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from vidcil.config import Params


def _generate(params: Params, out: Path | None = None) -> list[str]:
    from vidcil.io.moving_digits import default_stream, generate_stream

    b = params.benchmark
    landing = out or params.paths.landing
    specs = default_stream(b.class_batches, b.shift_batch, train_per_class=b.train_per_class,
                           test_per_class=b.test_per_class, shift_train_per_class=b.shift_train_per_class,
                           shift_test_per_class=b.shift_test_per_class)
    missing = [s for s in specs if not (landing / s.batch_id / "labels.csv").is_file()]
    if missing:  # deterministic: a batch already written is the same bytes, so it is skipped
        generate_stream(landing, specs, seed=b.seed, n_frames=b.frames, size=b.size, fps=b.fps,
                        only=[s.batch_id for s in missing])
    return [s.batch_id for s in specs]


def _generate_dots(params: Params, out: Path | None = None) -> list[str]:
    """The dots stream (random-dot kinematograms: the class is a flow field, no object) with benchmark.* sizes."""
    from vidcil.io.dots import dots_stream, generate_dots_stream

    b = params.benchmark
    landing = out or params.paths.landing
    specs = dots_stream(b.class_batches, b.shift_batch, train_per_class=b.train_per_class,
                        test_per_class=b.test_per_class, shift_train_per_class=b.shift_train_per_class,
                        shift_test_per_class=b.shift_test_per_class)
    missing = [s.batch_id for s in specs if not (landing / s.batch_id / "labels.csv").is_file()]
    if missing:
        generate_dots_stream(landing, specs, seed=b.seed, n_frames=b.frames, size=b.size, fps=b.fps, only=missing)
    return [s.batch_id for s in specs]


def _generate_realistic(params: Params, args: argparse.Namespace) -> list[str]:
    """The realistic stream (phone/camera-like clips of every size, rate and container) into ``--out``."""
    from vidcil.io.realistic import RealisticProfile, generate_realistic_stream

    landing = args.out or params.paths.landing
    given = {"class_batches": args.class_batches, "max_seconds": args.max_seconds}
    if args.per_class:
        given.update(train_per_class=args.per_class[0], test_per_class=args.per_class[1])
    profile = RealisticProfile(seed=params.benchmark.seed, **{k: v for k, v in given.items() if v is not None})
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            print(f"{done}/{total} clips, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    folders = generate_realistic_stream(landing, profile, progress=progress)
    return [f.name for f in folders]


def _validate(params: Params, batch_dir: Path, report: Path | None) -> int:
    """Check a batch folder against the contract and the GX suite; store nothing. Exit 3 if rejected."""
    from rich.console import Console

    from vidcil.io.validation import known_videos, validate_batch, validation_rules, write_report
    from vidcil.io.store import Store

    known = known_videos(Store(params.paths.store), batch_dir.name)
    report = report or Path("reports/validate") / batch_dir.name
    verdict = validate_batch(batch_dir, validation_rules(params), report, known=known)
    write_report(verdict, report)
    out = Console(highlight=False, soft_wrap=True)
    if verdict.accepted:
        out.print(f"[green]ACCEPTED[/] {batch_dir}: {len(verdict.accepted_rows)} of {len(verdict.manifest)} rows")
    else:
        out.print(f"[red]REJECTED[/] {batch_dir}")
        for reason in verdict.reasons:
            out.print(f"  batch: {reason}")
    for r in verdict.quarantined.itertuples():
        out.print(f"  quarantined: {r.reason}")
    out.print(f"report: {report}/summary.json" + (f"; Data Docs: {verdict.docs}" if verdict.docs else ""))
    return 0 if verdict.accepted else 3


def _operate(args, params: Params, pipeline) -> int:
    from vidcil.pipeline import operations

    with pipeline.one_writer(params.typed()):
        try:
            if args.command == "retire":
                r = operations.retire(params, args.batch_id, args.reason)
            else:
                r = operations.rollback(params, args.reason, to=args.to)
        except ValueError as e:  # nothing to roll back, no such batch or version: one line, nothing changed
            print(f"vidcil: {e}", file=sys.stderr)
            return 2
    if args.command == "retire":
        if r["reused"]:
            print(f"{r['batch_id']} was {r['kind']} already ({r['reason']}); records completed")
        else:
            print(f"{r['batch_id']} retired: {r['reason']}")
        print("  its videos leave the training set, the memory and the test index from the next batch on; the store "
              f"keeps them (data version {r.get('data_version', 'untracked')}; earlier versions stay in DVC's history)")
        if r.get("learnt_by_champion"):
            print(f"  champion v{r['learnt_by_champion']} learnt it: it keeps serving until a later model replaces it "
                  "(or `vidcil rollback --to VERSION` to one from before)")
        print("  a corrected copy: land it under a new batch id that sorts after every accepted batch")
    else:
        print(f"champion: v{r['from']} (learnt up to {r['from_batch']}) -> v{r['to']} (learnt up to {r['to_batch']}); "
              f"reason: {r['reason']}")
        print(f"  batches after {r['to_batch']} are learnt again by the next model; MLflow run {r['run_id']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vidcil", description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("generate", help="write a benchmark stream (default: the bundled one) into paths.landing")
    p.add_argument("--profile", choices=("bundled", "dots", "realistic"), default="bundled",
                   help="bundled: moving digits, 64 px mp4 clips (benchmark.* in params); dots: random-dot "
                        "kinematograms, the class a flow field (benchmark.* in params); realistic: moving "
                        "digits filmed as phones do, 240p-1080p, landscape and portrait, 10-60 fps, 2-30 s, "
                        "mp4/mkv/mov (H.264) and webm (VP9)")
    p.add_argument("--out", type=Path, default=None, help="landing folder (default: paths.landing)")
    p.add_argument("--class-batches", type=int, choices=range(1, 5), default=None, metavar="N",
                   help="realistic: batches, 1-4 (4 classes, then 2 new ones per batch; default 2)")
    p.add_argument("--per-class", type=int, nargs=2, default=None, metavar=("TRAIN", "TEST"),
                   help="realistic: training and test videos per class (default 20 6)")
    p.add_argument("--max-seconds", type=float, default=None, metavar="S",
                   help="realistic: longest clip, seconds (default 30; clips last 2 s to this)")
    p = sub.add_parser("validate", help="check a batch folder (labels.csv + videos); stores nothing")
    p.add_argument("batch_dir", type=Path)
    p.add_argument("--report", type=Path, default=None, help="report folder (default reports/validate/<batch>)")
    p = sub.add_parser("step", help="run one pipeline step for one batch")
    p.add_argument("step")
    p.add_argument("batch_id")
    p = sub.add_parser("run-batch", help="run every step for one batch")
    p.add_argument("batch_id")
    p = sub.add_parser("run-stream", help="run every landed batch in arrival order")
    p.add_argument("--report", type=Path, default=Path("reports"), help="where to write metrics/plots")
    p.add_argument("--fresh", action="store_true",
                   help="empty the data store first (dvc repro: the stream is learnt again from batch 0; "
                        "earlier versions stay in the DVC cache and remote)")
    p = sub.add_parser("retire", help="take an accepted batch out of the stream (its data leaves training, the "
                                      "memory and the test index; the store and DVC keep it)")
    p.add_argument("batch_id")
    p.add_argument("--reason", required=True, help="why: kept with the batch and in the registry")
    p = sub.add_parser("rollback", help="move champion back to an earlier promoted version, with the reason")
    p.add_argument("--to", default=None, metavar="VERSION", help="default: the champion before the current one")
    p.add_argument("--reason", required=True, help="why: kept on both versions and in an MLflow run")
    sub.add_parser("demo", help="generate the benchmark and run the whole stream")
    p = sub.add_parser("benchmark", help="every continual-learning method on one stream, same seeds and budget")
    p.add_argument("--landing", type=Path, default=None,
                   help="a stream in the incoming-batch contract (default: the bundled one of --stream)")
    p.add_argument("--stream", choices=("digits", "dots"), default="digits",
                   help="which bundled stream, when no --landing: moving digits (default) or random-dot flows")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (quick: 0)")
    p.add_argument("--out", type=Path, default=Path("reports/benchmark"))
    p.add_argument("--quick", action="store_true", help="smoke run: tiny stream, one seed, few epochs")
    p.add_argument("--no-ablation", action="store_true", help="skip the memory ablation")
    p.add_argument("--methods", nargs="+", default=None,
                   help="run only these methods (of vidcil.experiments.methods METHODS and EXTENSIONS, e.g. "
                        "tsd tsd_dynamic tsd_nextvlad r50_to_mnv3_encoder); no ablation, no single-frame model")
    args = parser.parse_args(argv)
    # validate and generate only read video: plugin options stay unparsed, torch and MLflow unimported
    try:
        params = Params.load(args.params, plugins=args.command not in ("validate", "generate"))
    except (FileNotFoundError, ValueError) as e:  # a missing file, or one line per wrong field
        parser.exit(2, f"vidcil: {e}\n")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    if args.command == "validate":
        return _validate(params, args.batch_dir, args.report)

    from vidcil.io.contract import BatchRejected, BatchSetAside, ServiceUnavailable
    from vidcil.io.project_lock import ProjectBusy
    from vidcil.pipeline import runner as pipeline

    try:
        return _run(args, params, parser, pipeline)
    except (ProjectBusy, ServiceUnavailable) as e:  # another writer, a service down: one line, exit 75 (later)
        parser.exit(75, f"vidcil: {e}\n")
    except BatchRejected as e:  # a step or run-batch on a rejected batch (the components' exit codes)
        parser.exit(3, f"vidcil: batch {getattr(args, 'batch_id', '')} rejected: {e}\n")
    except BatchSetAside as e:
        parser.exit(4, f"vidcil: {e}\n")


def _run(args, params, parser, pipeline) -> int:
    if args.command == "benchmark":
        from vidcil.experiments.benchmark import run_benchmark

        result = run_benchmark(params, args.out, landing=args.landing, seeds=args.seeds, quick=args.quick,
                               ablation=not args.no_ablation, methods=args.methods, stream=args.stream)
        print((args.out / "benchmark.md").read_text())
        print(f"wall time: {result['wall_seconds']:.0f} s; written: {args.out}/benchmark.json, benchmark.md, plots/")
        return 0
    if args.command == "generate":
        if args.profile != "realistic" and (args.class_batches or args.per_class or args.max_seconds):
            parser.error("--class-batches, --per-class and --max-seconds are for --profile realistic "
                         f"(the {args.profile} stream takes benchmark.* from the params file)")
        batches = (_generate_realistic(params, args) if args.profile == "realistic" else
                   _generate_dots(params, args.out) if args.profile == "dots" else _generate(params, args.out))
        print("\n".join(batches))
    elif args.command == "step":
        print(pipeline.run_step(params, args.step, args.batch_id))
    elif args.command == "run-batch":
        print(pipeline.run_batch(params, args.batch_id))
    elif args.command in ("retire", "rollback"):
        return _operate(args, params, pipeline)
    else:
        start = time.perf_counter()
        batch_ids = _generate(params) if args.command == "demo" else None
        if getattr(args, "fresh", False):
            shutil.rmtree(params.paths.store, ignore_errors=True)
        results = pipeline.run_stream(params, batch_ids)
        last = [r["batch_id"] for r in results if r.get("decision") in ("promoted", "held")]
        report = getattr(args, "report", Path("reports"))
        record = pipeline.stream_report(params, last[-1], report) if last else None
        if record:
            pipeline.print_table(record, results)
        print(f"wall time: {time.perf_counter() - start:.0f} s")
        print("See the runs, plots and the champion: mlflow ui --backend-store-uri sqlite:///mlflow.db "
              "(then open http://127.0.0.1:5000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
