"""bench.learning_curves runs the worker's own loop: a small run learns, selects unlabelled documents only, and its
summary computes labels-to-target, the share of random's and the stopping point from the curves."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bench import learning_curves as lc


def test_a_small_run_drives_the_service_loop(tmp_path):
    texts, labels, multilabel = lc.load("sms")
    rows = np.random.default_rng(0).choice(len(texts), 600, replace=False)
    texts, labels = [texts[i] for i in rows], [labels[i] for i in rows]
    pool, test = lc.split(labels, multilabel, 42)
    with_margin = lc.curve(texts, labels, multilabel, pool, test, 42, "quick", "margin+diverse", [20, 50, 100])
    rnd = lc.curve(texts, labels, multilabel, pool, test, 42, "quick", "random", [20, 50, 100])
    assert set(with_margin["points"]) == {20, 50, 100} and with_margin["final_family"] == "quick"
    assert with_margin["points"][100] >= 0.80, with_margin  # it learned (macro F1 on the held-out split)
    assert with_margin["points"][20] == rnd["points"][20]  # the same random start
    rounds = with_margin["rounds"]
    assert [x["labels"] for x in rounds] == [20, 50, 100]
    assert all(x["n_train"] == x["labels"] for x in rounds)  # every label trains the champion
    assert all(x["estimate"] is not None and 0 <= x["ece"] <= 1 and x["candidate"] is not None for x in rounds)
    assert rounds[-1]["n_random"] >= 1  # random documents were drawn into the batches and labelled


def test_the_simulated_annotator_labels_what_the_worker_chose(tmp_path):
    texts, labels, multilabel = lc.load("sms")
    texts, labels = texts[:300], labels[:300]
    pool, _ = lc.split(labels, multilabel, 1)
    sim = lc.Simulation(texts, labels, multilabel, pool, 1, "quick", "margin+balanced", tmp_path)
    start = [int(i) for i in pool[:30]]
    sim.annotate(start)
    assert sim.round() is not None and sim.champion() is not None
    batch = sim.next_batch(10)
    assert len(set(batch)) == 10 and not set(batch) & set(start) and set(batch) <= {int(i) for i in pool}
    history = sim.store.project_summary(sim.pid)["stability"]
    assert len(history) == 1 and history[0]["compared"] == 0  # the first model has nothing to compare with


def test_summary_labels_needed_and_share_of_random():
    def result(seed, rnd, unc):
        return {"dataset": "d", "seed": seed, "n_pool": 1000, "reference": None,
                "full": {"quick": {"f1_macro": 0.90}},
                "curves": {"quick | random": {"points": rnd, "stop_at": None, "seconds": 1.0},
                           "quick | margin": {"points": unc, "stop_at": 200, "seconds": 1.0}}}
    rnd = {100: 0.70, 200: 0.80, 500: 0.85, 900: 0.89}
    unc = {100: 0.80, 200: 0.895, 500: 0.90, 900: 0.90}
    summary = lc.summarise(json.loads(json.dumps([result(1, rnd, unc), result(2, rnd, unc)])))  # as re-read
    t = summary["d"]["table"]
    assert t["quick | random"]["needed"] == 900 and t["quick | margin"]["needed"] == 200
    assert t["quick | margin"]["share_of_random"] == 200 / 900 and t["quick | margin"]["stop_at"] == [200, 200]
    never = lc.summarise([result(1, {100: 0.5, 900: 0.6}, {100: 0.5, 900: 0.6})])["d"]["table"]
    assert never["quick | random"]["needed"] == 1000 and never["quick | margin"]["needed"] is None  # random: all


def test_honesty_summary_measures_the_loop_against_the_truth():
    def rounds(champ, cand, status, est):
        return [{"labels": b, "champion": c, "candidate": d, "status": st, "estimate": e, "low": e - 0.05,
                 "high": e + 0.05, "n_train": b, "ece": 0.04} for b, c, d, st, e in zip(
                     (50, 100, 200, 300, 500, 1000), champ, cand, status, est)]

    champ = [0.70, 0.80, 0.85, 0.85, 0.85, 0.85]
    cand = [0.70, 0.80, 0.85, 0.87, 0.88, 0.89]  # three better candidates rejected in a row
    status = ["champion", "champion", "champion", "rejected", "rejected", "rejected"]
    est = [0.6, 0.7, 0.83, 0.86, 0.79, 0.85]
    r = {"dataset": "d", "seed": 1, "n_pool": 1000, "full": {"quick": {"f1_macro": 0.88}},
         "curves": {"quick | margin": {"points": dict(zip((50, 100, 200, 300, 500, 1000), champ)), "stop_at": 300,
                                       "rounds": rounds(champ, cand, status, est)}}}
    (row,) = lc.honesty([r])
    assert row["ece_200"] == 0.04 and row["ece_1000"] == 0.04 and row["all_labels"]
    assert row["est_err_max"] == pytest.approx(0.06) and row["interval_held"] == 0.75  # 500: 0.79 +- 0.05
    assert row["worst_reject_run"] == 3  # 300, 500 and 1000 rejected candidates better by 0.02 to 0.04
    assert row["gate_hit"] == 3 / 6 and row["stop"] == [(300, None)]  # never within 0.02 of 0.88
    assert row["worst_drop"] == 0.0 and row["at_50"] == 0.0


def test_the_simulated_annotator_meets_suggestions_and_the_modes_are_compared(tmp_path):
    """Each batch is shown pre-labelled: review picks the surest suggestions, which the annotator keeps more often
    than the active-learning picks; the modes summary reads labels-to-target and the kept shares per kind."""
    texts, labels, multilabel = lc.load("sms")
    texts, labels = texts[:400], labels[:400]
    pool, _ = lc.split(labels, multilabel, 1)
    start = [int(i) for i in pool[:40]]
    kept = {}
    for mode in ("learn", "review"):
        sim = lc.Simulation(texts, labels, multilabel, pool, 1, "quick", f"margin@{mode}", tmp_path / mode)
        sim.annotate(start)
        assert sim.round() is not None
        batch = sim.next_batch(30)
        assert len(sim.shown) == len(batch) == 30
        assert {lc.mode_of(w) for w, _ in sim.shown} <= {"learn", "review", "audit", "cold_start"}
        kept[mode] = np.mean([k for w, k in sim.shown if lc.mode_of(w) != "audit"])
    assert kept["review"] >= 0.9 and kept["review"] > kept["learn"]

    def run(sel, points, shown):
        return {"dataset": "d", "seed": 1, "n_pool": 1000, "full": {"quick": {"f1_macro": 0.90}},
                "curves": {f"quick | {sel}": {"points": points, "rounds": [
                    {"labels": b, "shown": n, "accepted": a, "accepted_by": {"learn": [a, n]}}
                    for b, (n, a) in zip(points, shown)]}}}
    rows = lc.modes([run("margin", {100: 0.85, 300: 0.895}, [(10, 5), (10, 9)]),
                     run("margin@review", {100: 0.80, 300: 0.85}, [(10, 10), (10, 10)])])
    by = {r["selection"]: r for r in rows}
    assert by["margin"]["needed"] == 300 and by["margin"]["accepted"] == 0.7 and by["margin"]["mode"] == "learn"
    assert by["margin"]["accepted_before_200"] == 0.5 and by["margin"]["accepted_from_200"] == 0.9
    assert by["margin@review"]["needed"] is None and by["margin@review"]["mode"] == "review"
