"""The benchmark's targets: figures over seeds with 95 % t intervals, met only when the intervals say so."""

import pytest

from vidcil.experiments.report import mean_std, paired_vs, separated, targets


def test_the_interval_is_the_t_interval_of_the_mean():
    stat = mean_std([1.0, 2.0, 3.0])
    assert (stat["mean"], stat["std"], stat["n"]) == (2.0, 1.0, 3)
    assert stat["ci95"] == pytest.approx(4.303 / 3 ** 0.5, abs=1e-3)  # t(0.975, 2 dof) * s / sqrt(n)
    assert mean_std([0.7])["ci95"] == 0.0


def _summary(ours_acc, replay_acc, ours_forget, replay_forget):
    return {"tsd": {"final_accuracy": mean_std(ours_acc), "mean_forgetting": mean_std(ours_forget)},
            "replay": {"final_accuracy": mean_std(replay_acc), "mean_forgetting": mean_std(replay_forget)}}


def test_the_default_beats_replay_only_by_3_points_with_intervals_apart():
    clear = _summary([0.90, 0.91, 0.92], [0.85, 0.86, 0.87], [0.05, 0.06, 0.07], [0.20, 0.21, 0.22])
    met = {t["target"][:40]: t["met"] for t in targets(clear, {}, [], None)}
    assert all(met.values()) and len(met) == 2
    noisy = _summary([0.80, 0.99, 0.92], [0.85, 0.86, 0.87], [0.05, 0.06, 0.07], [0.20, 0.21, 0.22])
    beat = targets(noisy, {}, [], None)[0]
    assert beat["figure"].startswith("0.903 ± ") and "+4.3 points" in beat["figure"]
    assert not beat["met"]  # 4.3 points ahead on average, but the intervals overlap
    close = _summary([0.88, 0.89, 0.90], [0.86, 0.87, 0.88], [0.05, 0.06, 0.07], [0.10, 0.11, 0.12])
    assert [t["met"] for t in targets(close, {}, [], None)] == [False, False]  # 2 points; forgetting 0.06 > 0.055


def test_forgetting_is_compared_after_the_last_batch_with_new_classes_when_given():
    final = _summary([0.90, 0.91, 0.92], [0.85, 0.86, 0.87], [0.05, 0.06, 0.07], [0.06, 0.07, 0.08])
    before = {"tsd": {"mean_forgetting": mean_std([0.1, 0.11, 0.12])},
              "replay": {"mean_forgetting": mean_std([0.3, 0.31, 0.32])}}
    forgetting = targets(final, {}, [], None, after=("b003", before))[1]
    assert "after b003" in forgetting["target"] and forgetting["met"]
    assert not targets(final, {}, [], None)[1]["met"]  # the final figures alone: 0.06 vs 0.07


def _run(final, after, first_then):
    """A 3-batch run: final accuracy, accuracy after batch 1, and batch 0's accuracy after batch 0 and 1."""
    return {"metrics": {"final_accuracy": final},
            "matrix": [[first_then[0]], [first_then[1], 1.0], [0.9, 0.9, 0.9]],
            "batches": [{"accuracy_all_seen": first_then[0]}, {"accuracy_all_seen": after}, {"accuracy_all_seen": final}]}


def test_paired_differences_take_each_seed_against_the_same_seed_of_replay():
    # Seed luck (0.5 vs 0.9) is shared by both methods: the paired difference is a steady +0.05.
    runs = {"replay": {0: _run(0.50, 0.4, (1.0, 0.6)), 1: _run(0.90, 0.8, (1.0, 0.8)), 2: _run(0.70, 0.6, (1.0, 0.7))},
            "ours": {0: _run(0.55, 0.5, (1.0, 0.9)), 1: _run(0.95, 0.9, (1.0, 0.9)), 2: _run(0.75, 0.7, (1.0, 0.9)),
                     3: _run(0.10, 0.1, (1.0, 0.1))}}  # seed 3: replay did not run it, left out
    d = paired_vs(runs, "replay", 1)
    assert set(d) == {"ours"}  # replay against itself is not a row
    assert d["ours"]["final_accuracy"]["n"] == 3
    assert d["ours"]["final_accuracy"]["mean"] == pytest.approx(0.05) and d["ours"]["final_accuracy"]["ci95"] < 1e-9
    assert d["ours"]["accuracy_after"]["mean"] == pytest.approx(0.1)
    assert d["ours"]["mean_forgetting_after"]["mean"] == pytest.approx(((0.1 - 0.4) + (0.1 - 0.2) + (0.1 - 0.3)) / 3)
    assert "mean_forgetting_after" not in paired_vs(runs, "replay", None)["ours"]
    apart = mean_std([0.50, 0.90, 0.70])  # the two figures' own intervals overlap widely
    assert not separated(mean_std([0.55, 0.95, 0.75]), apart)
