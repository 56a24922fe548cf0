"""Aggregate benchmark runs over seeds; the targets; the Markdown table and the plots."""

from __future__ import annotations

import numpy as np

from vidcil.io import plots
from vidcil.experiments.methods import ABLATIONS, EXTENSIONS, METHODS
from vidcil.core import metrics

METRICS = ("final_accuracy", "average_incremental_accuracy", "forgetting_first", "mean_forgetting",
           "backward_transfer", "memory_bytes", "optimizer_steps", "wall_seconds",
           "final_hit_at_1", "final_nme_accuracy", "parameters", "cpu_latency_ms")
TARGET_STEP_MARGIN = 0.02  # "joint accuracy - 2 points"


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and the half-width of the mean's 95 % t interval over ``values``
    (seeds); one value has no spread (0)."""
    from scipy.stats import t

    v = np.asarray(values, dtype=float)
    n = len(v)
    std = float(v.std(ddof=1)) if n > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "ci95": float(t.ppf(0.975, n - 1) * std / n ** 0.5) if n > 1 else 0.0,
            "n": n}


def separated(better: dict, worse: dict, higher_is_better: bool = True) -> bool:
    """Whether two ``mean_std`` figures' 95 % intervals do not overlap, ``better`` on the better side."""
    if higher_is_better:
        return better["mean"] - better["ci95"] > worse["mean"] + worse["ci95"]
    return better["mean"] + better["ci95"] < worse["mean"] - worse["ci95"]


def summarize(runs: dict[str, dict[int, dict]]) -> dict[str, dict[str, dict[str, float]]]:
    """``runs[method][seed]`` (with ``metrics``) -> ``{method: {metric: {mean, std, n}}}``."""
    return {m: {k: mean_std([r["metrics"][k] for r in by_seed.values()]) for k in METRICS
                if all(k in r["metrics"] for r in by_seed.values())}
            for m, by_seed in runs.items()}


def steps_to(curve: list[list[float]], target: float) -> int | None:
    """Optimizer steps at the first epoch whose accuracy reaches ``target`` (None: never)."""
    return next((int(s) for s, acc in curve if acc >= target), None)


def compute_comparison(runs: dict[str, dict[int, dict]]) -> list[dict]:
    """Per later batch and seed: steps for distillation (tsd) and for retraining (joint) to reach joint - 2 points
    (seeds where the default did not run with its per-epoch curve are left out: e.g. a row renamed ``tsd``
    that was run under another name, or ``tsd`` renamed for an earlier default)."""
    rows = []
    for seed, joint in runs.get("joint", {}).items():
        tsd = runs.get("tsd", {}).get(seed)
        if tsd is None or not any(b.get("curve") for b in tsd["batches"][1:]):
            continue
        for k in range(1, len(joint["batches"])):
            target = joint["batches"][k]["accuracy_all_seen"] - TARGET_STEP_MARGIN
            distil, retrain = steps_to(tsd["batches"][k]["curve"], target), steps_to(joint["batches"][k]["curve"], target)
            rows.append({"batch_id": joint["batches"][k]["batch_id"], "seed": seed, "target_accuracy": target,
                         "distil_steps": distil, "retrain_steps": retrain,
                         "distil_final": tsd["batches"][k]["accuracy_all_seen"],
                         "ratio": distil / retrain if distil is not None and retrain else None})
    return rows


def last_new_class_batch(result: dict) -> int | None:
    """The last batch that brought a new class, when later batches brought none (e.g. a domain-shift
    batch with every known class), else None. Those later batches re-teach old classes from new
    videos, which hides forgetting in the final figures; the state before them shows it."""
    seen, last = set(), None
    for k, classes in enumerate(result["stream"].get("batch_classes") or []):
        if set(classes) - seen:
            last = k
        seen |= set(classes)
    return last if last is not None and 0 < last < len(result["stream"]["batches"]) - 1 else None


def at_batch(runs: dict[str, dict[int, dict]], k: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per method, mean ± 95 % t interval over seeds of the accuracy on all seen classes and both forgettings after batch ``k``."""
    out = {}
    for name, by_seed in runs.items():
        rows = {"accuracy_all_seen": [], "mean_forgetting": [], "forgetting_first": []}
        for r in by_seed.values():
            A = metrics.accuracy_matrix(r["matrix"])[: k + 1, : k + 1]
            rows["accuracy_all_seen"].append(r["batches"][k]["accuracy_all_seen"])
            rows["mean_forgetting"].append(metrics.mean_forgetting(A))
            rows["forgetting_first"].append(metrics.forgetting_first(A))
        out[name] = {key: mean_std(v) for key, v in rows.items()}
    return out


def paired_vs(runs: dict[str, dict[int, dict]], rival: str, k: int | None) -> dict[str, dict[str, dict[str, float]]]:
    """Per method, its figure minus ``rival``'s on the same seed (both start from that seed's batch-0 model),
    mean ± 95 % t interval over the seeds both ran: final accuracy, and accuracy on all seen classes and
    mean forgetting after batch ``k`` (None: left out). The seed's batch-0 model, shared by both, drops out
    of the difference; intervals of the two methods' own figures keep it (and overlap more)."""
    out = {}
    for name, by_seed in runs.items():
        seeds = [s for s in by_seed if s in runs.get(rival, {})] if name != rival else []
        if len(seeds) < 2:
            continue
        ours, theirs = [by_seed[s] for s in seeds], [runs[rival][s] for s in seeds]
        rows = {"final_accuracy": [a["metrics"]["final_accuracy"] - b["metrics"]["final_accuracy"]
                                   for a, b in zip(ours, theirs)]}
        if k is not None:
            def after(r):
                return metrics.mean_forgetting(metrics.accuracy_matrix(r["matrix"])[: k + 1, : k + 1])
            rows["accuracy_after"] = [a["batches"][k]["accuracy_all_seen"] - b["batches"][k]["accuracy_all_seen"]
                                      for a, b in zip(ours, theirs)]
            rows["mean_forgetting_after"] = [after(a) - after(b) for a, b in zip(ours, theirs)]
        out[name] = {key: mean_std(v) for key, v in rows.items()}
    return out


def _interval(stat: dict) -> str:
    return f"{stat['mean']:.3f} ± {stat['ci95']:.3f}"


def targets(summary: dict, ablation: dict, compute: list[dict], single_frame: dict | None,
            after: tuple[str, dict] | None = None) -> list[dict]:
    """The issue's targets, each with the measured figure and whether it is met. ``tsd`` is the
    product's default (the pipeline with ``params.yaml`` as it is), ``replay`` its rival.

    ``ablation``: the summary over the ablation seeds (TSD included), so memories compare on equal seeds.
    ``after``: (batch id, :func:`at_batch` summary) after the last batch with new classes, where
    forgetting is compared (later batches re-teach every class); None: the final figures.
    """
    def m(method, metric, of=summary):
        return of[method][metric]["mean"] if method in of else None

    out = []
    if "tsd" in summary and "replay" in summary:
        ours, rival = summary["tsd"]["final_accuracy"], summary["replay"]["final_accuracy"]
        gain = ours["mean"] - rival["mean"]
        out.append({"target": "the default beats replay by >= 3 points of final accuracy (95 % intervals apart)",
                    "figure": f"{_interval(ours)} vs {_interval(rival)} ({gain * 100:+.1f} points)",
                    "met": gain >= 0.03 and separated(ours, rival)})
        where, of = after if after is not None else ("the last batch", summary)
        ours, rival = of["tsd"]["mean_forgetting"], of["replay"]["mean_forgetting"]
        out.append({"target": f"the default's mean forgetting <= 1/2 of replay's after {where} (95 % intervals apart)",
                    "figure": f"{_interval(ours)} vs {_interval(rival)}",
                    "met": ours["mean"] <= 0.5 * rival["mean"] and separated(ours, rival, higher_is_better=False)})
    ft, joint, tsd = m("finetune", "final_accuracy"), m("joint", "final_accuracy"), m("tsd", "final_accuracy")
    if None not in (ft, joint, tsd):
        closed = (tsd - ft) / (joint - ft) if joint > ft else float("nan")
        out.append({"target": "the default closes >= 90 % of the finetune-joint gap (final accuracy)",
                    "figure": f"{closed:.0%} ({ft:.3f} -> {tsd:.3f} of {joint:.3f})" if joint > ft
                    else f"no gap: finetune {ft:.3f} >= joint {joint:.3f}", "met": joint > ft and closed >= 0.9})
    if "mem_uniform8_x4" in ablation:
        acc_u, bytes_u = m("mem_uniform8_x4", "final_accuracy", ablation), m("mem_uniform8_x4", "memory_bytes", ablation)
        acc_d, bytes_d = m("tsd", "final_accuracy", ablation), m("tsd", "memory_bytes", ablation)
        out.append({"target": "the default's memory matches 8-uniform-frames accuracy (within 1 point) at <= 1/4 of "
                              "its bytes",
                    "figure": f"{acc_d:.3f} at {bytes_d / 1e3:.0f} kB vs {acc_u:.3f} at {bytes_u / 1e3:.0f} kB "
                              f"({bytes_d / bytes_u:.2f}x the bytes)",
                    "met": acc_d >= acc_u - 0.01 and bytes_d <= bytes_u / 4})
    if compute:
        ratios = [r["ratio"] for r in compute]
        reached = [x for x in ratios if x is not None]
        figure = (f"mean {np.mean(reached):.2f}x of retraining's steps over {len(reached)} of {len(ratios)} "
                  "batch-seeds" if reached else "never reached")
        if len(reached) < len(ratios):
            figure += f"; not reached in {len(ratios) - len(reached)}"
        out.append({"target": "distillation reaches joint - 2 points in <= 1/3 of retraining's steps",
                    "figure": figure, "met": bool(reached) and len(reached) == len(ratios) and max(reached) <= 1 / 3})
    if single_frame:
        out.append({"target": "a single-frame model scores far below a temporal one (joint training, all classes)",
                    "figure": f"{single_frame['single_frame']['mean']:.3f} vs {single_frame['temporal']['mean']:.3f}",
                    "met": single_frame["single_frame"]["mean"] < single_frame["temporal"]["mean"] - 0.2})
    return out


def _cell(stat: dict, fmt: str, scale: float = 1.0) -> str:
    """Mean ± the half-width of its 95 % t interval over seeds (the mean alone for one seed)."""
    mean, half = stat["mean"] * scale, stat["ci95"] * scale
    return f"{mean:{fmt}} ± {half:{fmt.lstrip('+')}}" if stat["n"] > 1 else f"{mean:{fmt}}"


def drop_vs_teacher(runs: dict[str, dict[int, dict]]) -> dict[str, dict[str, float]]:
    """The batch-0 model's accuracy on batch 0's test videos minus its successor's after batch 1,
    per method: what a student forgot of its teacher (a compression run's teacher is the batch-0 model)."""
    return {m: mean_std([r["matrix"][0][0] - r["matrix"][1][0] for r in by_seed.values()])
            for m, by_seed in runs.items() if all(len(r["matrix"]) > 1 for r in by_seed.values())}


def extensions_table(result: dict) -> list[str]:
    names = [m.name for m in EXTENSIONS if m.name in result["summary"]]
    if not names:
        return []
    titles, summary = {m.name: m.title for m in METHODS + EXTENSIONS}, result["summary"]
    drop = drop_vs_teacher(result["runs"])
    out = ["\n## Further methods (the pipeline with these params; `vidcil benchmark --methods ...`)\n",
           "Forgetting vs teacher: the batch-0 model's accuracy on b000's test videos minus its student's "
           "after the next batch (compression rows: the ResNet-50 teacher vs the MobileNetV3 student). "
           "Hit@1 equals the top-1 accuracy here: every clip has one label. NME: the same final model's "
           "encodings classified by the nearest class mean of the clips it holds (memory + last batch; iCaRL) "
           "instead of its linear head. CPU latency: one clip, "
           f"{result['settings']['device']}, median of 20.\n\n",
           "| method | final acc | Hit@1 | NME acc | forgetting (mean) | forgetting vs teacher | params (M) | CPU ms / clip "
           "| optimizer steps | wall s |\n|---|---|---|---|---|---|---|---|---|---|\n"]
    for name in ["tsd", "replay"] + names:
        if name not in summary or "parameters" not in summary[name]:
            continue
        s = summary[name]
        out.append(f"| {titles[name]} | {_cell(s['final_accuracy'], '.3f')} | {_cell(s['final_hit_at_1'], '.3f')} | "
                   f"{_cell(s['final_nme_accuracy'], '.3f') if 'final_nme_accuracy' in s else '—'} | "
                   f"{_cell(s['mean_forgetting'], '.3f')} | {_cell(drop[name], '.3f') if name in drop else '—'} | "
                   f"{_cell(s['parameters'], '.2f', 1e-6)} | {_cell(s['cpu_latency_ms'], '.1f')} | "
                   f"{_cell(s['optimizer_steps'], '.0f')} | {_cell(s['wall_seconds'], '.0f')} |\n")
    return out


def markdown(result: dict) -> str:
    summary, titles = result["summary"], {m.name: m.title for m in METHODS + ABLATIONS + EXTENSIONS}
    seeds = ", ".join(str(s) for s in result["seeds"])
    head = ("| method | final acc | avg incr acc | forgetting (1st batch) | forgetting (mean) | BWT "
            "| memory kB | optimizer steps | wall s |\n|---|---|---|---|---|---|---|---|---|\n")

    def table(names, summary=summary):
        lines = []
        for name in names:
            if name not in summary:
                continue
            s = summary[name]
            lines.append(f"| {titles[name]} | {_cell(s['final_accuracy'], '.3f')} | "
                         f"{_cell(s['average_incremental_accuracy'], '.3f')} | {_cell(s['forgetting_first'], '.3f')} | "
                         f"{_cell(s['mean_forgetting'], '.3f')} | {_cell(s['backward_transfer'], '.3f')} | "
                         f"{_cell(s['memory_bytes'], '.0f', 1e-3)} | {_cell(s['optimizer_steps'], '.0f')} | "
                         f"{_cell(s['wall_seconds'], '.0f')} |")
        return head + "\n".join(lines) + "\n"

    out = [f"## Methods (mean ± 95 % t interval over seeds {seeds})\n", table([m.name for m in METHODS])]
    out += extensions_table(result)
    if result.get("ablation_summary"):
        seeds_a = ", ".join(str(s) for s in result["ablation_seeds"])
        out += [f"\n## Memory ablation (TSD distillation; same byte budget unless stated; seeds {seeds_a})\n",
                table(["tsd"] + [a.name for a in ABLATIONS], result["ablation_summary"])]
    elif named := [a.name for a in ABLATIONS if a.name in summary]:  # memory rows run by name (--methods)
        out += [f"\n## Memory ablation (TSD distillation; same byte budget unless stated; seeds {seeds})\n",
                table(["tsd"] + named)]
    k = last_new_class_batch(result)
    if k is not None:
        batch = result["stream"]["batches"][k]
        out += [f"\n## After {batch}, the last batch with new classes (mean ± 95 % t interval over seeds; ablation: seeds "
                f"{', '.join(str(s) for s in result['ablation_seeds']) or '—'})\n",
                "The later batches bring no new class: they re-teach the known classes from new videos, which "
                "hides forgetting in the final figures above.\n\n",
                "| method | accuracy on all seen classes | forgetting (1st batch) | forgetting (mean) |\n|---|---|---|---|\n"]
        for name, s in at_batch(result["runs"], k).items():
            out.append(f"| {titles[name]} | {_cell(s['accuracy_all_seen'], '.3f')} | "
                       f"{_cell(s['forgetting_first'], '.3f')} | {_cell(s['mean_forgetting'], '.3f')} |\n")
    if paired := paired_vs(result["runs"], "replay", k):
        where = f" | after {result['stream']['batches'][k]}: accuracy | after {result['stream']['batches'][k]}: " \
                "mean forgetting" if k is not None else ""
        out += ["\n## Each method minus replay, seed by seed (mean ± 95 % t interval of the paired differences)\n",
                "Both start from the seed's batch-0 model: its luck drops out of a paired difference, which is "
                "why these intervals are narrower than the two figures' own. The targets below keep the "
                "issue's rule (the two figures' intervals apart).\n\n",
                f"| method | seeds | final acc{where} |\n|---|---|---{'|---|---' if k is not None else ''}|\n"]
        for name, s in paired.items():
            cells = [_cell(s["final_accuracy"], "+.3f")]
            if k is not None:
                cells += [_cell(s["accuracy_after"], "+.3f"), _cell(s["mean_forgetting_after"], "+.3f")]
            out.append(f"| {titles.get(name, name)} | {s['final_accuracy']['n']} | {' | '.join(cells)} |\n")
    if result.get("compute"):
        out += ["\n## Compute: optimizer steps to reach joint accuracy − 2 points\n",
                "| batch | seed | target | distil from champion | retrain from scratch | ratio |\n|---|---|---|---|---|---|\n"]
        for r in result["compute"]:
            ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "—"
            distil = r["distil_steps"] if r["distil_steps"] is not None else f"not reached ({r['distil_final']:.3f})"
            out.append(f"| {r['batch_id']} | {r['seed']} | {r['target_accuracy']:.3f} | {distil} | "
                       f"{r['retrain_steps'] if r['retrain_steps'] is not None else '—'} | {ratio} |\n")
    if result.get("single_frame"):
        sf = result["single_frame"]
        out.append(f"\nSingle frame vs temporal (joint training on every batch, all classes): "
                   f"{_cell(sf['single_frame'], '.3f')} vs {_cell(sf['temporal'], '.3f')}\n")
    out += ["\n## Targets\n", "| target | measured | met |\n|---|---|---|\n"]
    out += [f"| {t['target']} | {t['figure']} | {'yes' if t['met'] else '**no**'} |\n" for t in result["targets"]]
    return "".join(out)


def accuracy_curves(result: dict):
    """Accuracy on all seen classes after each batch, every method (mean ± 95 % t interval over seeds)."""
    fig, ax = plots.plt.subplots(figsize=(8, 4.5))
    titles = {m.name: m.title for m in METHODS + ABLATIONS + EXTENSIONS}
    colours = plots.plt.get_cmap("tab20").colors  # more methods than the default cycle's 10 colours
    for i, (name, by_seed) in enumerate(result["runs"].items()):
        acc = np.array([[b["accuracy_all_seen"] for b in r["batches"]] for r in by_seed.values()])
        x = [b["batch_id"] for b in next(iter(by_seed.values()))["batches"]]
        style = "--" if name.startswith("mem_") else "-"
        line, = ax.plot(x, acc.mean(0), style, marker="o", color=colours[(2 * i) % 20 + (2 * i) // 20],
                        label=titles.get(name, name))
        if len(acc) > 1:
            ax.fill_between(x, acc.mean(0) - acc.std(0), acc.mean(0) + acc.std(0), color=line.get_color(), alpha=0.12)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("after batch")
    ax.set_ylabel("accuracy on all seen classes")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def tsd_matrix(result: dict):
    """The TSD accuracy matrix, mean over seeds."""
    runs = list(result["runs"]["tsd"].values())
    rows = np.nanmean([metrics.accuracy_matrix(r["matrix"]) for r in runs], axis=0)
    batches = [b["batch_id"] for b in runs[0]["batches"]]
    record = {"columns": batches, "matrix": [list(r[: i + 1]) for i, r in enumerate(rows)],
              "batches": [{"batch_id": b} for b in batches]}
    return plots.accuracy_matrix(record)
