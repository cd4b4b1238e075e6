"""Learning curves of the service itself: macro F1 on a fixed test split against the number of labels, for each
MODEL_FAMILIES setting and each selection (AL_STRATEGY, with AL_BATCH after a "+" and PRELABEL_MODE after an "@"),
with a simulated annotator.

Each curve runs the worker's own code on a ``local/`` project in a temporary instance (SQLite store, model
folders): every point is one retrain round (``Training.train``: the families due, cross-fitted over every label,
calibrated, the ensemble, the gate against the champion, the estimate and the stopping signal), a new champion
scores the pool (``Prelabels.score_pool``) and the next batch is chosen by ``Prelabels.choose`` (cold start,
strategy, batch mode) with AUDIT_SHARE of it drawn at random, as ``Prelabels.prelabel`` does. The annotator then labels that batch with the true labels, up to the next point of the schedule.
"random" is the same loop with AL_STRATEGY=random. The test split (25 %, stratified for single-label data) is
never trained on or selected from.

For each dataset it prints the mean curve per (families, selection) over the seeds, the full-data score (the same
round on every pool label), the labels each selection needs to come within 0.01 of it (random: all the pool when
it never gets there) and that count as a share of random's, the normalised area under the curve (up to the
last point every curve of the dataset has), and where the stopping signal first came on. GoEmotions also gets
TF-IDF + one-vs-rest LinearSVC on all the pool labels, in the same run, as the reference its full-data score must
reach. Every batch after the first model is shown pre-labelled by the champion, as annotators meet it: the share
of suggestions the annotator kept as they were is printed per selection, beside the labels to the target, which is
how PRELABEL_MODE (learn, review, mixed) is compared.

    python -m bench.learning_curves                        # the defaults below (about 3 h on 2 cores)
    python -m bench.learning_curves --datasets sms --seeds 42 --families quick --strategies random,margin
    python -m bench.learning_curves --families "hybrid,quick;quick;embed;rnn" --max-labels 1000
    python -m bench.learning_curves --families bert --datasets sms --subset 1000 --seeds 42 --max-labels 300
    python -m bench.learning_curves --datasets sms,ag_news --seeds 42 --strategies margin,margin@review,margin@mixed

Writes bench/out/learning_curves.json (every point), learning_curves_summary.json and learning_curves.png.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from model.names import mode_of

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "out"
SCHEDULE = (20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 4000)
DEFAULT_STRATEGIES = "random,least_confidence,entropy,margin,margin+diverse,margin+balanced"
logger = logging.getLogger("bench.learning_curves")


def load(name: str) -> tuple[list[str], list[Any], bool]:
    if name == "sms":
        df = pd.read_csv(DATA / "sms_spam" / "sms_spam.csv", keep_default_na=False)
        return df.text.tolist(), df.label.tolist(), False
    if name == "ag_news":
        df = pd.read_csv(DATA / "ag_news" / "ag_news_test.csv", keep_default_na=False)
        return df.text.tolist(), df.label.tolist(), False
    if name == "goemotions":
        df = pd.read_csv(DATA / "goemotions" / "goemotions_dev.csv", keep_default_na=False)
        return df.text.tolist(), [tuple(x.split(";")) for x in df["labels"]], True
    raise SystemExit(f"unknown dataset {name!r}")


def split(labels: Sequence[Any], multilabel: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    idx = np.arange(len(labels))
    pool, test = train_test_split(idx, test_size=0.25, stratify=None if multilabel else list(labels),
                                  random_state=seed)
    return pool, test


class Simulation:
    """One ``local/`` project served by the worker's Loop, whose annotator knows every pool label."""

    def __init__(self, texts: list[str], labels: list[Any], multilabel: bool, pool: np.ndarray, seed: int,
                 families: str, selection: str, root: Path) -> None:
        from config import Settings  # noqa: PLC0415
        from storage import Document, Project, Store, text_hash  # noqa: PLC0415
        from worker.loop import Loop  # noqa: PLC0415

        selection, _, mode = selection.partition("@")
        strategy, _, batch = selection.partition("+")
        self.settings = Settings.from_env({"INSTANCE_PATH": str(root), "MODEL_FAMILIES": families,
                                           "AL_STRATEGY": strategy, "AL_BATCH": batch or "top",
                                           "PRELABEL_MODE": mode or "learn",
                                           "MODEL_SEED": str(seed), "LOG_LEVEL": "WARNING"})
        self.store = Store(self.settings.db_url)
        self.store.create_all()
        self.loop = Loop(self.settings, self.store)
        self.pid = self.store.ensure_project("local", "local", "bench")
        self.texts, self.labels, self.multilabel = texts, labels, multilabel
        self.doc_of: dict[int, int] = {}  # dataset row -> document id
        classes = sorted({c for y in labels for c in y}) if multilabel else None
        with self.store.session() as s:
            p = s.get(Project, self.pid)
            p.label_type = "multilabel" if multilabel else "enum"
            if multilabel:
                p.label_ids = [[c, c] for c in classes]
            docs = [Document(project_id=self.pid, platform_id=str(i), filename=str(i), text=texts[i],
                             text_hash=text_hash(texts[i]), source="corpus") for i in pool]
            s.add_all(docs)
            s.flush()
            self.doc_of = {int(i): d.id for i, d in zip(pool, docs)}
        self.labelled: list[int] = []
        # the last batch's suggestions: (how each was chosen, whether the annotator kept it as it was)
        self.shown: list[tuple[str, bool]] = []

    def annotate(self, rows: Sequence[int]) -> None:
        from storage import Label  # noqa: PLC0415

        with self.store.session() as s:
            for i in rows:
                y = self.labels[i]
                s.add(Label(project_id=self.pid, document_id=self.doc_of[int(i)], who="bench",
                            value=json.dumps(list(y) if self.multilabel else y)))
        self.labelled += [int(i) for i in rows]

    def round(self, measure: Any = None) -> Any:
        """One retrain round as jobs.retrain runs it: train, then a new champion scores the pool. ``measure``
        (optional) is called with the round's result before the versions' folders are dropped."""
        result = self.loop.training.train(self.pid)
        if result is not None and result.status == "champion":
            self.loop.prelabels.score_pool(self.pid, result.champion_id)
        if measure is not None:
            measure(result)
        self._drop_old_versions()
        return result

    def champion(self) -> Any:
        from storage import Project  # noqa: PLC0415

        with self.store.session() as s:
            cid = s.get(Project, self.pid).champion_id
        return None if cid is None else self.loop.classifier(self.pid, cid)

    def next_batch(self, n: int) -> list[int]:
        """The worker's choice of ``n`` unlabelled pool rows (Prelabels.choose)."""
        from model.names import class_counts  # noqa: PLC0415

        clf = self.champion()
        taken = set(self.labelled)
        rest = [i for i in self.doc_of if i not in taken]
        self.shown = []
        if clf is None:  # no model yet (too few labels or one class): the service waits; the annotator goes on
            return list(np.random.default_rng(len(taken)).permutation(rest)[:n])
        counts = class_counts(list(self.labels[i]) if self.multilabel else self.labels[i] for i in self.labelled)
        choice = self.loop.prelabels.choose(clf, [self.texts[i] for i in rest], n, counts)
        idx, tag = choice.idx, choice.tag
        # as Prelabels.prelabel: AUDIT_SHARE of the batch drawn at random for the estimate, first; a random cold
        # start's picks are random documents too
        from storage import ModelVersion, Project  # noqa: PLC0415

        with self.store.session() as s:
            version = s.get(ModelVersion, s.get(Project, self.pid).champion_id).version
        audit = self.loop.prelabels.draw_audit(self.pid, version, len(rest), tag, n)
        picks = list(dict.fromkeys([int(i) for i in audit] + [int(i) for i in idx]))[:n]
        random_picks = picks if tag.startswith("cold_start:random") or tag == "random" else audit
        self.loop.prelabels.mark_audit([self.doc_of[rest[i]] for i in random_picks])
        # the annotator meets each pick pre-labelled by the champion (Prelabels.suggestion) and keeps it or not
        why = dict(zip((int(i) for i in choice.idx), choice.tags))
        decided = clf.decide(clf.predict_proba([self.texts[rest[i]] for i in picks])) if picks else []
        for i, d in zip(picks, decided):
            truth = self.labels[rest[i]]
            kept = set(d) == set(truth) if self.multilabel else str(d) == str(truth)
            self.shown.append(("audit:random" if i in set(audit) else why.get(i, tag), bool(kept)))
        return [rest[i] for i in picks]

    def stop(self) -> dict[str, Any]:
        from model.stopping import stop_signal  # noqa: PLC0415

        history = self.store.project_summary(self.pid)["stability"]
        return stop_signal(history, self.settings.stop_rounds, self.settings.stop_kappa, self.settings.stop_min_labels)

    def _drop_old_versions(self) -> None:
        """Disk only: the folders of every version but the champion (it is kept in memory anyway)."""
        from storage import ModelVersion, Project  # noqa: PLC0415

        with self.store.session() as s:
            cid = s.get(Project, self.pid).champion_id
            paths = [v.path for v in s.query(ModelVersion).filter(ModelVersion.project_id == self.pid,
                                                                  ModelVersion.id != cid) if v.path]
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)


def macro_f1(clf: Any, texts: list[str], labels: list[Any], multilabel: bool) -> float:
    from model.evaluate import evaluate, evaluate_multilabel  # noqa: PLC0415

    pred = clf.decide(clf.predict_proba(texts))
    if multilabel:
        return float(evaluate_multilabel(labels, pred, list(clf.classes_))["f1_macro"])
    return float(evaluate(labels, pred, list(clf.classes_))["f1_macro"])


def full_data(texts: list[str], labels: list[Any], multilabel: bool, pool: np.ndarray, test: np.ndarray,
              seed: int, families: str) -> dict[str, Any]:
    """The service's round on every pool label: the score the curves aim at."""
    with tempfile.TemporaryDirectory(prefix="prelabel-lc-") as root:
        sim = Simulation(texts, labels, multilabel, pool, seed, families, "random", Path(root))
        sim.annotate(pool)
        t0 = time.perf_counter()
        result = sim.round()
        clf = sim.champion()
        return {"f1_macro": macro_f1(clf, [texts[i] for i in test], [labels[i] for i in test], multilabel),
                "family": clf.family, "version": result.version, "seconds": round(time.perf_counter() - t0, 1)}


def linear_svc_reference(texts: list[str], labels: list[Any], pool: np.ndarray, test: np.ndarray) -> float:
    """TF-IDF (word 1-2 grams) + one-vs-rest LinearSVC on every pool label, macro F1 on the test split."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415
    from sklearn.metrics import f1_score  # noqa: PLC0415
    from sklearn.multiclass import OneVsRestClassifier  # noqa: PLC0415
    from sklearn.preprocessing import MultiLabelBinarizer  # noqa: PLC0415
    from sklearn.svm import LinearSVC  # noqa: PLC0415

    mlb = MultiLabelBinarizer().fit([labels[i] for i in pool] + [labels[i] for i in test])
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vec.fit_transform([texts[i] for i in pool])
    clf = OneVsRestClassifier(LinearSVC()).fit(x, mlb.transform([labels[i] for i in pool]))
    pred = clf.predict(vec.transform([texts[i] for i in test]))
    return float(f1_score(mlb.transform([labels[i] for i in test]), pred, average="macro", zero_division=0))


def curve(texts: list[str], labels: list[Any], multilabel: bool, pool: np.ndarray, test: np.ndarray, seed: int,
          families: str, selection: str, schedule: Sequence[int]) -> dict[str, Any]:
    """At each point of ``schedule``: the champion's macro F1 on the test split, the estimate the service shows
    beside it (model/estimate.py), the champion's ECE on the test split, the round's candidate's own test F1 and
    the gate's decision, the labels the champion trained on; the stopping signal's first point; timings. The
    champion's test-split confidences and outcomes at 200 and 1,000 labels go in ``reliability`` (the diagram)."""
    from model import calibration  # noqa: PLC0415

    x_te, y_te = [texts[i] for i in test], [labels[i] for i in test]
    start = list(np.random.default_rng(seed).permutation(pool)[: schedule[0]])  # the same random start for all
    points: dict[int, float] = {}
    rounds: list[dict[str, Any]] = []
    reliability: dict[int, dict[str, list[float]]] = {}
    stopped_at = None
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prelabel-lc-") as root:
        sim = Simulation(texts, labels, multilabel, pool, seed, families, selection, Path(root))
        sim.annotate(start)
        for k, budget in enumerate(schedule):
            row: dict[str, Any] = {"labels": budget}

            def measure(result: Any) -> None:
                if result is not None and result.version:
                    cand = sim.loop.load_copy(result.version_id)
                    row.update(candidate=macro_f1(cand, x_te, y_te, multilabel), status=result.status,
                               version=result.version,  # every candidate trains on every label (issue 28)
                               n_train=sim.store.get_version(sim.pid, result.version)["n_train"])

            sim.round(measure)
            clf = sim.champion()
            points[budget] = macro_f1(clf, x_te, y_te, multilabel) if clf is not None else 0.0
            row["champion"] = points[budget]
            if clf is not None:
                v = sim.store.get_version(sim.pid, sim.store.project_summary(sim.pid)["champion"]["version"])
                est = (v["metrics"] or {}).get("estimate") or {}
                f1 = (est.get("metrics") or {}).get("f1_macro") or {}
                row.update(estimate=f1.get("value"), low=f1.get("low"), high=f1.get("high"),
                           n_random=est.get("n_random"), cv=(v["metrics"] or {}).get("f1_macro"))
                proba = clf.predict_proba(x_te)
                conf, right = calibration.shown(proba, y_te, list(clf.classes_), multilabel)
                row["ece"] = calibration.ece(conf, right)
                if budget in (200, 1000):
                    reliability[budget] = {"conf": [round(float(c), 4) for c in conf],
                                           "right": [bool(r) for r in right]}
            stop = sim.stop()
            row["kappa"] = (sim.store.project_summary(sim.pid)["stability"] or [{}])[-1].get("kappa")
            if stopped_at is None and stop["suggested"]:
                stopped_at = budget
            rounds.append(row)
            if k + 1 < len(schedule):
                sim.annotate(sim.next_batch(schedule[k + 1] - len(sim.labelled)))
                # the batch annotated after this round: how many suggestions were kept as they were, by kind
                row["shown"] = len(sim.shown)
                row["accepted"] = sum(kept for _, kept in sim.shown)
                row["accepted_by"] = {m: [sum(k for w, k in sim.shown if mode_of(w) == m),
                                          sum(1 for w, _ in sim.shown if mode_of(w) == m)]
                                      for m in sorted({mode_of(w) for w, _ in sim.shown})}
        family = clf.family if clf is not None else None
    logger.warning("%s %s seed %d: %s (%.0fs)", families, selection, seed,
                   " ".join(f"{r['labels']}:{r['champion']:.3f}/est {r.get('estimate') or 0:.3f}/ece "
                            f"{r.get('ece') or 0:.3f}" for r in rounds), time.perf_counter() - t0)
    return {"points": points, "stop_at": stopped_at, "final_family": family, "rounds": rounds,
            "reliability": reliability, "seconds": round(time.perf_counter() - t0, 1)}


def labels_needed(points: dict[int, float], target: float, n_all: int | None = None) -> int | None:
    """The first point of the curve at or above ``target``; ``n_all`` (every label: the full-data score, which
    reaches it by definition) when a random curve never gets there; None for a selection that does not."""
    for b in sorted(points):
        if points[b] >= target:
            return b
    return n_all


def area(points: dict[int, float]) -> float:
    """Normalised area under the curve on a log labels axis (each doubling of labels weighs the same)."""
    xs = np.log(sorted(points))
    ys = np.array([points[b] for b in sorted(points)])
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0])) if len(xs) > 1 else float(ys[0])


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per dataset and families: mean curves, labels needed, share of random's, area, stopping points."""
    out: dict[str, Any] = {}
    for r in results:
        out.setdefault(r["dataset"], {"n_pool": r["n_pool"], "seeds": [], "full": {}, "reference": [],
                                      "curves": {}})
        d = out[r["dataset"]]
        d["seeds"].append(r["seed"])
        if r.get("reference") is not None:
            d["reference"].append(r["reference"])
        for fams, full in r["full"].items():
            d["full"].setdefault(fams, []).append(full["f1_macro"])
        for key, c in r["curves"].items():
            d["curves"].setdefault(key, []).append(c)
    for name, d in out.items():
        d["reference"] = float(np.mean(d["reference"])) if d["reference"] else None
        best_full = max(float(np.mean(v)) for v in d["full"].values())
        d["target"] = best_full - 0.01
        table = {}
        for key, cs in d["curves"].items():
            fams, selection = key.split(" | ")
            budgets = sorted(set.intersection(*(set(map(int, c["points"])) for c in cs)))
            mean = {b: float(np.mean([c["points"][b] if b in c["points"] else c["points"][str(b)] for c in cs]))
                    for b in budgets}
            std = {b: float(np.std([c["points"][b] if b in c["points"] else c["points"][str(b)] for c in cs]))
                   for b in budgets}
            stops = [c["stop_at"] for c in cs]
            table[key] = {"families": fams, "selection": selection, "mean": mean, "std": std,
                          "full": float(np.mean(d["full"][fams])), "stop_at": stops,
                          "seconds": float(np.mean([c["seconds"] for c in cs]))}
        for key, t in table.items():
            t["needed"] = labels_needed(t["mean"], d["target"], d["n_pool"] if t["selection"] == "random" else None)
            rnd = table.get(f"{t['families']} | random", {}).get("needed")
            if rnd is None:  # random of another families setting: the best random curve is the reference
                rnds = [u["needed"] for u in table.values() if u["selection"] == "random"]
                rnd = min(rnds) if rnds else None
            t["random_needed"] = rnd
            t["share_of_random"] = None if t["needed"] is None or not rnd else t["needed"] / rnd
        # areas over the same span, or a curve measured further (random to 4,000) looks better for it
        d["area_to"] = min(max(t["mean"]) for t in table.values()) if table else 0
        for t in table.values():
            t["area"] = area({b: v for b, v in t["mean"].items() if b <= d["area_to"]})
        d["table"] = table
    return out


def report(summary: dict[str, Any]) -> None:
    for name, d in summary.items():
        print(f"\n## {name}: macro F1 on the test split, mean of seeds {d['seeds']}; pool {d['n_pool']} labels")
        for fams, scores in d["full"].items():
            print(f"full data with {fams}: {np.mean(scores):.3f}±{np.std(scores):.3f}")
        if d["reference"] is not None:
            print(f"reference TF-IDF + one-vs-rest LinearSVC on all the pool labels: {d['reference']:.3f}")
        print(f"target (best full-data score - 0.01): {d['target']:.3f}")
        budgets = sorted({b for t in d["table"].values() for b in t["mean"]})
        print("\n| families | selection | " + " | ".join(str(b) for b in budgets)
              + f" | labels to target | share of random's | area to {d['area_to']} | stop signal at |")
        print("|" + "---|" * (len(budgets) + 6))
        for t in d["table"].values():
            cells = [f"{t['mean'][b]:.3f}" if b in t["mean"] else "" for b in budgets]
            need = "never" if t["needed"] is None else (f"all {t['needed']}" if t["needed"] == d["n_pool"]
                                                        else str(t["needed"]))
            share = "" if t["share_of_random"] is None or t["selection"] == "random" else f"{t['share_of_random']:.2f}"
            stops = ",".join("-" if s is None else str(s) for s in t["stop_at"])
            print(f"| {t['families']} | {t['selection']} | " + " | ".join(cells)
                  + f" | {need} | {share} | {t['area']:.3f} | {stops} |")


def honesty(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset, families and selection, over the seeds: what the loop tells people against the truth.

    ece_200 / ece_1000: the champion's expected calibration error on the test split; est_err: the largest
    |estimate shown - test macro F1| at 200+ labels (and how often the interval held the truth); gate_hit: the share
    of rounds whose champion is within 0.01 of the best candidate trained so far (test F1), worst_reject_run: the
    longest run of rounds rejecting a candidate better by 0.01+; stop: where the stop sign came on, against the
    first point within 0.02 of the full-data score (it must not come before it, and should by twice it);
    all_labels: whether every candidate trained on every label; worst_drop: the largest fall of the mean curve from
    its best so far (20 labels on), with the seeds' spread there; at_50: champion minus the same families trained
    once on those 50 labels."""
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for r in results:
        for key, c in r["curves"].items():
            if c.get("rounds"):
                groups.setdefault((r["dataset"], key), []).append((r, c))
    out = []
    for (dataset, key), runs in groups.items():
        fams = key.split(" | ")[0]
        ece = {b: [x["ece"] for _, c in runs for x in c["rounds"] if x["labels"] == b and x.get("ece") is not None]
               for b in (200, 1000)}
        errs, held, hits, n_rounds, reject_runs, stops, used = [], [], 0, 0, [], [], []
        at50 = []
        for r, c in runs:
            full = r["full"][fams]["f1_macro"]
            best, run = 0.0, 0
            near = next((x["labels"] for x in c["rounds"] if x["champion"] >= full - 0.02), None)
            stops.append((c["stop_at"], near))
            worst = 0
            for x in c["rounds"]:
                if x.get("estimate") is not None and x["labels"] >= 200:
                    errs.append(abs(x["estimate"] - x["champion"]))
                    if x.get("low") is not None:
                        held.append(x["low"] <= x["champion"] <= x["high"])
                best = max(best, x.get("candidate") or 0.0)
                n_rounds += 1
                hits += x["champion"] >= best - 0.01
                run = run + 1 if x.get("status") == "rejected" and (x.get("candidate") or 0) >= x["champion"] + 0.01 \
                    else 0
                worst = max(worst, run)
                if x.get("n_train") is not None:
                    used.append(x["n_train"] == x["labels"])
                if x["labels"] == 50 and x.get("candidate") is not None:
                    at50.append(x["champion"] - x["candidate"])
            reject_runs.append(worst)
        budgets = sorted(set.intersection(*(set(int(b) for b in c["points"]) for _, c in runs)))
        mean = [float(np.mean([c["points"].get(b, c["points"].get(str(b))) for _, c in runs])) for b in budgets]
        spread = [float(np.std([c["points"].get(b, c["points"].get(str(b))) for _, c in runs])) for b in budgets]
        drops = [(max(mean[:i + 1]) - m, spread[i], budgets[i]) for i, m in enumerate(mean)]
        drop = max(drops, default=(0.0, 0.0, None))
        out.append({"dataset": dataset, "families": fams, "selection": key.split(" | ")[1],
                    "ece_200": float(np.mean(ece[200])) if ece[200] else None,
                    "ece_1000": float(np.mean(ece[1000])) if ece[1000] else None,
                    "est_err_max": max(errs) if errs else None, "est_err_mean": float(np.mean(errs)) if errs else None,
                    "interval_held": float(np.mean(held)) if held else None,
                    "gate_hit": hits / n_rounds if n_rounds else None, "worst_reject_run": max(reject_runs),
                    "stop": stops, "all_labels": bool(used) and all(used),
                    "worst_drop": drop[0], "worst_drop_spread": drop[1], "worst_drop_at": drop[2],
                    "at_50": float(np.mean(at50)) if at50 else None})
    return out


def report_honesty(rows: list[dict[str, Any]]) -> None:
    def f(x: Any, nd: int = 3) -> str:
        return "" if x is None else f"{x:.{nd}f}"

    print("\n## What the loop tells people, against the test split (targets: ECE <= 0.05; estimate within 0.03 at "
          "200+ labels; gate hit >= 0.90 and no run of more than 3 rejected better candidates; stop not before the "
          "point within 0.02 of full data, and by twice it)")
    print("\n| dataset | families | selection | ECE 200 | ECE 1000 | estimate error max (mean) | interval held "
          "| gate hit | worst rejected run | stop at (point within 0.02) | every label trained | worst drop (spread, "
          "at) | at 50: champion - trained once |")
    print("|" + "---|" * 13)
    for r in rows:
        stops = ", ".join(f"{'-' if a is None else a} ({'-' if b is None else b})" for a, b in r["stop"])
        print(f"| {r['dataset']} | {r['families']} | {r['selection']} | {f(r['ece_200'])} | {f(r['ece_1000'])} | "
              f"{f(r['est_err_max'])} ({f(r['est_err_mean'])}) | {f(r['interval_held'], 2)} | {f(r['gate_hit'], 2)} | "
              f"{r['worst_reject_run']} | {stops} | {'yes' if r['all_labels'] else 'no'} | {f(r['worst_drop'])} "
              f"({f(r['worst_drop_spread'])}, {r['worst_drop_at']}) | {f(r['at_50'])} |")


def plot_reliability(results: list[dict[str, Any]], path: Path) -> None:
    """Reliability diagrams (10 equal-width bins) of the champions' test-split scores at 200 and 1,000 labels,
    per dataset and selection, the seeds pooled."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from model.calibration import ece, reliability  # noqa: PLC0415

    panels: dict[tuple[str, str, int], tuple[list[float], list[bool]]] = {}
    for r in results:
        for key, c in r["curves"].items():
            for b, d in (c.get("reliability") or {}).items():
                conf, right = panels.setdefault((r["dataset"], key, int(b)), ([], []))
                conf += d["conf"]
                right += d["right"]
    if not panels:
        return
    keys = sorted(panels)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 3.6), squeeze=False)
    for ax, k in zip(axes[0], keys):
        conf, right = np.array(panels[k][0]), np.array(panels[k][1])
        bins = [b for b in reliability(conf, right) if b["n"]]
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=0.1, align="edge", alpha=0.6,
               edgecolor="k")
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "ro", ms=3)
        ax.set_title(f"{k[0]} {k[1].split(' | ')[1]}\n{k[2]} labels, ECE {ece(conf, right):.3f}", fontsize=8)
        ax.set_xlabel("score shown")
        ax.set_ylabel("share right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = list(summary)
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        d = summary[name]
        for key, t in d["table"].items():
            xs = sorted(t["mean"])
            m, sd = np.array([t["mean"][b] for b in xs]), np.array([t["std"][b] for b in xs])
            ax.plot(xs, m, marker="o", ms=3, label=key, ls="--" if t["selection"] == "random" else "-")
            ax.fill_between(xs, m - sd, m + sd, alpha=0.1)
        ax.axhline(d["target"] + 0.01, color="k", ls=":", lw=1, label=f"full data ({d['n_pool']} labels)")
        if d["reference"] is not None:
            ax.axhline(d["reference"], color="r", ls=":", lw=1, label="TF-IDF + OvR LinearSVC, all labels")
        ax.set_xscale("log")
        ax.set_title(f"{name} ({len(d['seeds'])} seeds)")
        ax.set_xlabel("labels")
        ax.set_ylabel("macro F1, test split")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.learning_curves", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--datasets", default="sms,ag_news,goemotions")
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--families", default="hybrid,quick",
                    help="MODEL_FAMILIES settings to measure, separated by ';' (default: the service default)")
    ap.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                    help="AL_STRATEGY[+AL_BATCH] selections, separated by ','")
    ap.add_argument("--max-labels", type=int, default=2000, help="last point of the schedule (up to 4000)")
    ap.add_argument("--subset", type=int, default=0,
                    help="use this many rows of each dataset (a random sample, seed 0), e.g. for bert on CPU")
    ap.add_argument("--full-from", type=Path, nargs="+", default=[], metavar="JSON",
                    help="reuse the full-data scores of earlier runs (same dataset, seed and families) instead of "
                         "fitting every pool label again (10-15 minutes per dataset and seed on 2 cores)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--tag", default="", help="suffix of the output files (runs of different settings side by side)")
    ap.add_argument("--report", type=Path, nargs="+", metavar="JSON",
                    help="only summarise earlier runs' learning_curves*.json (merged), run nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level="WARNING", format="%(asctime)s %(message)s")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from model.names import BATCH_MODES, FAMILIES, PRELABEL_MODES, STRATEGIES  # noqa: PLC0415

    families = [f.strip() for f in args.families.split(";") if f.strip()]
    selections = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for fams in families:
        if bad := [f for f in fams.split(",") if f.strip() not in FAMILIES]:
            ap.error(f"unknown family {bad[0]!r}; known: {', '.join(FAMILIES)}")
    for sel in selections:
        rest, _, mode = sel.partition("@")
        strategy, _, batch = rest.partition("+")
        if strategy not in STRATEGIES or (batch and batch not in BATCH_MODES) or (mode and mode not in PRELABEL_MODES):
            ap.error(f"selection {sel!r}: AL_STRATEGY one of {STRATEGIES}, optionally +one of {BATCH_MODES}, "
                     f"optionally @PRELABEL_MODE one of {PRELABEL_MODES}")
    schedule = [b for b in SCHEDULE if b <= args.max_labels]
    results: list[dict[str, Any]] = []
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "learning_curves" + (f"_{args.tag}" if args.tag else "")
    if args.report:
        for path in args.report:
            results += json.loads(path.read_text())
        return finish(merge(results), args.out, stem)
    earlier = {(r["dataset"], r["seed"]): r["full"] for path in args.full_from for r in json.loads(path.read_text())}
    for dataset in args.datasets.split(","):
        texts, labels, multilabel = load(dataset)
        if args.subset and args.subset < len(texts):
            rows = np.random.default_rng(0).choice(len(texts), args.subset, replace=False)
            texts, labels = [texts[i] for i in rows], [labels[i] for i in rows]
        for seed in (int(s) for s in args.seeds.split(",")):
            pool, test = split(labels, multilabel, seed)
            r: dict[str, Any] = {"dataset": dataset + (f" ({args.subset} rows)" if args.subset else ""), "seed": seed, "n_pool": len(pool), "n_test": len(test),
                                 "full": {}, "curves": {},
                                 "reference": linear_svc_reference(texts, labels, pool, test) if multilabel else None}
            for fams in families:
                reused = earlier.get((r["dataset"], seed), {}).get(fams)
                r["full"][fams] = reused or full_data(texts, labels, multilabel, pool, test, seed, fams)
                logger.warning("%s seed %d %s: full data %s%s", dataset, seed, fams, r["full"][fams],
                               " (from --full-from)" if reused else "")
                for sel in selections:
                    r["curves"][f"{fams} | {sel}"] = curve(texts, labels, multilabel, pool, test, seed, fams, sel,
                                                           [b for b in schedule if b < len(pool)])
            results.append(r)
            (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1))  # each seed as it ends
    return finish(results, args.out, stem)


def merge(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs of the same (dataset, seed) with different settings, as one result each."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for r in results:
        m = out.setdefault((r["dataset"], r["seed"]), {**r, "full": {}, "curves": {}})
        m["full"].update(r["full"])
        m["curves"].update(r["curves"])
        m["reference"] = m.get("reference") if m.get("reference") is not None else r.get("reference")
    return list(out.values())


def modes(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset, families and selection (PRELABEL_MODE after "@"), over the seeds: the labels the mean curve
    needs to come within 0.01 of the full-data score, and the share of suggestions the simulated annotator kept as
    they were (all of them; before and from 200 labels; by kind of pick: learn, review, audit)."""
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for r in results:
        for key, c in r["curves"].items():
            if any("shown" in x for x in c.get("rounds") or []):
                groups.setdefault((r["dataset"], key), []).append((r, c))
    out = []
    for (dataset, key), runs in groups.items():
        fams, sel = key.split(" | ")
        target = float(np.mean([r["full"][fams]["f1_macro"] for r, _ in runs])) - 0.01
        budgets = sorted(set.intersection(*(set(int(b) for b in c["points"]) for _, c in runs)))
        mean = {b: float(np.mean([c["points"].get(b, c["points"].get(str(b))) for _, c in runs])) for b in budgets}
        rows = [x for _, c in runs for x in c["rounds"] if "shown" in x]

        def share(xs: list[dict[str, Any]]) -> float | None:
            n = sum(x["shown"] for x in xs)
            return sum(x["accepted"] for x in xs) / n if n else None

        by: dict[str, list[int]] = {}
        for x in rows:
            for m, (a, n) in (x.get("accepted_by") or {}).items():
                by.setdefault(m, [0, 0])
                by[m][0] += a
                by[m][1] += n
        out.append({"dataset": dataset, "families": fams, "selection": sel, "mode": sel.partition("@")[2] or "learn",
                    "target": target, "needed": labels_needed(mean, target), "last": budgets[-1] if budgets else None,
                    "accepted": share(rows), "accepted_before_200": share([x for x in rows if x["labels"] < 200]),
                    "accepted_from_200": share([x for x in rows if x["labels"] >= 200]),
                    "accepted_by": {m: a / n for m, (a, n) in by.items() if n}, "shown": sum(x["shown"] for x in rows)})
    return out


def report_modes(rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    def f(x: Any) -> str:
        return "" if x is None else f"{x:.2f}"

    print("\n## PRELABEL_MODE: labels to the full-data score - 0.01, and suggestions the annotator kept as they were")
    print("\n| dataset | families | selection | labels to target | kept | kept < 200 labels | kept from 200 | "
          "kept by kind |")
    print("|" + "---|" * 8)
    for r in rows:
        need = str(r["needed"]) if r["needed"] is not None else f"> {r['last']}"
        kinds = ", ".join(f"{m} {v:.2f}" for m, v in sorted(r["accepted_by"].items()))
        print(f"| {r['dataset']} | {r['families']} | {r['selection']} | {need} | {f(r['accepted'])} | "
              f"{f(r['accepted_before_200'])} | {f(r['accepted_from_200'])} | {kinds} |")


def finish(results: list[dict[str, Any]], out: Path, stem: str) -> int:
    summary = summarise(results)
    summary["honesty"] = honesty(results)
    summary["modes"] = modes(results)
    (out / f"{stem}_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    report({k: v for k, v in summary.items() if k not in ("honesty", "modes")})
    report_honesty(summary["honesty"])
    report_modes(summary["modes"])
    plot({k: v for k, v in summary.items() if k not in ("honesty", "modes")}, out / f"{stem}.png")
    plot_reliability(results, out / f"{stem}_reliability.png")
    print(f"\nwrote {out / (stem + '.json')}, {stem}_summary.json, {stem}.png and {stem}_reliability.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
