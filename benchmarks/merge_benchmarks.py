"""One benchmark table from runs made apart: several ``vidcil benchmark --methods ...`` outputs of the same
stream and seeds (e.g. run one after the other, or beside each other) merged into one result.

    python benchmarks/merge_benchmarks.py reports/a reports/b [...] --out benchmarks/results/NAME

Each input is a folder with ``benchmark.json``, or with the ``partial.json`` of a benchmark stopped before
the end (killed, out of time): its seeds are then those every one of its methods finished. They must share
the stream (landing, batches, classes) and the seeds, and no method may appear twice. The summary, the compute comparison and the targets are
computed again from the merged runs by the same code as ``vidcil benchmark``
(:mod:`vidcil.experiments.report`); ``benchmark.json`` keeps each input's settings and wall time.

``--seeds 0 1 2`` keeps only those seeds of every input (a 3-seed run beside a 5-seed one). A row run
under an earlier default is named for what it ran with ``--rename tsd=tsd_plain`` (every input of that
call; merge the renamed output with the rest in a second call). Both are recorded in ``merged_from``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vidcil.experiments import report
from vidcil.experiments.benchmark import write
from vidcil.experiments.methods import ABLATIONS, EXTENSIONS, METHODS


def merge(results: list[dict], seeds: list[int] | None = None, rename: dict[str, str] | None = None) -> dict:
    """One result from ``results``; ``seeds``: only these seeds of each (every input must have run them);
    ``rename``: rows given another method's name (a row run under an earlier default: ``tsd`` -> ``tsd_plain``)."""
    if seeds is not None:
        results = [only_seeds(r, seeds) for r in results]
    if rename:
        results = [renamed(r, rename) for r in results]
    first = results[0]
    for r in results[1:]:
        if r["stream"] != first["stream"]:
            raise ValueError(f"not the same stream: {r['stream']['landing']} vs {first['stream']['landing']}")
        if r["seeds"] != first["seeds"]:
            raise ValueError(f"not the same seeds: {r['seeds']} vs {first['seeds']}")
    runs: dict = {}
    for r in results:
        twice = set(runs) & set(r["runs"])
        if twice:
            raise ValueError(f"methods in more than one input: {', '.join(sorted(twice))}")
        runs |= {m: {int(s): run for s, run in seeds.items()} for m, seeds in r["runs"].items()}
    summary = report.summarize(runs)
    compute = report.compute_comparison(runs)
    merged = {"stream": first["stream"], "settings": first["settings"], "seeds": first["seeds"], "ablation_seeds": [],
              "wall_seconds": round(sum(r["wall_seconds"] for r in results), 1), "runs": runs, "summary": summary,
              "ablation_summary": {}, "compute": compute, "single_frame": None,
              "merged_from": [{"methods": sorted(r["runs"]), "settings": r["settings"], "wall_seconds": r["wall_seconds"],
                               "stopped_early": r.get("stopped_early", False), "renamed": r.get("renamed", {}),
                              **({"merged_from": r["merged_from"]} if "merged_from" in r else {})}
                             for r in results]}
    k = report.last_new_class_batch(merged)
    after = (merged["stream"]["batches"][k], report.at_batch(runs, k)) if k is not None else None
    merged["targets"] = report.targets(summary, {}, compute, None, after)
    return merged


def renamed(result: dict, rename: dict[str, str]) -> dict:
    """``result`` with its rows ``old`` named ``new`` (``rename``: old -> new; a name not in the method
    lists is refused, as is a name already taken)."""
    known = {m.name for m in METHODS + ABLATIONS + EXTENSIONS}
    if unknown := sorted(set(rename.values()) - known):
        raise ValueError(f"not a method: {', '.join(unknown)} (see vidcil/experiments/methods.py)")
    runs = {}
    for m, by_seed in result["runs"].items():
        new = rename.get(m, m)
        if new in runs:
            raise ValueError(f"{m} -> {new}: {new} is already a row of this input")
        runs[new] = by_seed
    return result | {"runs": runs, "renamed": {**result.get("renamed", {}), **{k: v for k, v in rename.items()
                                                                               if k in result["runs"]}}}


def only_seeds(result: dict, seeds: list[int]) -> dict:
    """``result`` cut to ``seeds`` (its memory ablation left out); refused, naming them, if it lacks any."""
    ablation = set(result.get("ablation", [])) | {a.name for a in ABLATIONS if result.get("ablation_seeds")}
    for m, by_seed in result["runs"].items():
        missing = [s for s in seeds if str(s) not in map(str, by_seed)]
        if missing and m not in ablation:  # the memory ablation ran on its own seeds; it is left out below
            raise ValueError(f"{m} did not run seed(s) {', '.join(map(str, missing))} (it ran "
                             f"{', '.join(map(str, by_seed))}): leave them out of --seeds")
    runs = {m: {str(s): r for s, r in by_seed.items() if int(s) in seeds}
            for m, by_seed in result["runs"].items() if m not in ablation}
    return result | {"seeds": list(seeds), "ablation_seeds": [], "runs": runs}


def load(folder: Path) -> dict:
    """A benchmark's result: ``benchmark.json``, else a stopped run's ``partial.json`` cut to the seeds
    every method finished, the memory ablation left out (refused when no seed is complete)."""
    if (folder / "benchmark.json").is_file():
        return json.loads((folder / "benchmark.json").read_text())
    if not (folder / "partial.json").is_file():
        raise FileNotFoundError(f"{folder}: neither benchmark.json nor partial.json (a benchmark's --out folder?)")
    partial = json.loads((folder / "partial.json").read_text())
    if "stream" not in partial:
        raise ValueError(f"{folder}/partial.json was written before 2026-12-07 (runs only, no stream): rerun it")
    # The memory ablation runs on its own seeds only (experiments.ablation_seeds): left out of a stopped run.
    methods = {m: by_seed for m, by_seed in partial["runs"].items() if m not in partial.get("ablation", [])}
    done = [s for s in partial["seeds"] if all(str(s) in by_seed for by_seed in methods.values())]
    if not done:
        raise ValueError(f"{folder}/partial.json: no seed finished by every method ({', '.join(methods)})")
    runs = {m: {str(s): by_seed[str(s)] for s in done} for m, by_seed in methods.items()}
    return partial | {"seeds": done, "ablation_seeds": [], "runs": runs, "stopped_early": True}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", type=Path, nargs="+", help="folders with benchmark.json (or a stopped run's partial.json)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", help="only these seeds of every input (e.g. the 3 that all ran)")
    ap.add_argument("--rename", nargs="+", default=[], metavar="OLD=NEW",
                    help="rows run under an earlier default, named for what they ran: e.g. tsd=tsd_plain")
    args = ap.parse_args(argv)
    if bad := [r for r in args.rename if r.count("=") != 1 or not all(r.split("="))]:
        ap.error(f"--rename takes OLD=NEW, not {' '.join(bad)}")
    merged = merge([load(p) for p in args.inputs], args.seeds, dict(r.split("=") for r in args.rename))
    args.out.mkdir(parents=True, exist_ok=True)
    write(merged, args.out)
    print((args.out / "benchmark.md").read_text())
    print(f"written: {args.out}/benchmark.json, benchmark.md, plots/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
