"""Learning curves of the service itself: macro F1 on a fixed test split against the number of labels, for each
MODEL_FAMILIES setting and each selection (AL_STRATEGY, with AL_BATCH after a "+"), with a simulated annotator.

Each curve runs the worker's own code on a ``local/`` project in a temporary instance (SQLite store, model
folders): every point is one retrain round (``Training.train``: the families due, the 80/20 validation split,
the ensemble, the gate against the champion), a new champion scores the pool (``Prelabels.score_pool``, which
also records the stopping signal) and the next batch is chosen by ``Prelabels.choose`` (cold start, strategy,
batch mode). The annotator then labels that batch with the true labels, up to the next point of the schedule.
"random" is the same loop with AL_STRATEGY=random. The test split (25 %, stratified for single-label data) is
never trained on or selected from.

For each dataset it prints the mean curve per (families, selection) over the seeds, the full-data score (the same
round on every pool label), the labels each selection needs to come within 0.01 of it (random: all the pool when
it never gets there) and that count as a share of random's, the normalised area under the curve (up to the
last point every curve of the dataset has), and where the stopping signal first came on. GoEmotions also gets
TF-IDF + one-vs-rest LinearSVC on all the pool labels, in the same run, as the reference its full-data score must
reach.

    python -m bench.learning_curves                        # the defaults below (about 3 h on 2 cores)
    python -m bench.learning_curves --datasets sms --seeds 42 --families quick --strategies random,margin
    python -m bench.learning_curves --families "hybrid,quick;quick;embed;rnn" --max-labels 1000
    python -m bench.learning_curves --families bert --datasets sms --subset 1000 --seeds 42 --max-labels 300

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

        strategy, _, batch = selection.partition("+")
        self.settings = Settings.from_env({"INSTANCE_PATH": str(root), "MODEL_FAMILIES": families,
                                           "AL_STRATEGY": strategy, "AL_BATCH": batch or "top",
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

    def annotate(self, rows: Sequence[int]) -> None:
        from storage import Label  # noqa: PLC0415

        with self.store.session() as s:
            for i in rows:
                y = self.labels[i]
                s.add(Label(project_id=self.pid, document_id=self.doc_of[int(i)], who="bench",
                            value=json.dumps(list(y) if self.multilabel else y)))
        self.labelled += [int(i) for i in rows]

    def round(self) -> Any:
        """One retrain round as jobs.retrain runs it: train, then a new champion scores the pool."""
        result = self.loop.training.train(self.pid)
        if result is not None and result.status == "champion":
            self.loop.prelabels.score_pool(self.pid, result.champion_id)
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
        if clf is None:  # no model yet (too few labels or one class): the service waits; the annotator goes on
            return list(np.random.default_rng(len(taken)).permutation(rest)[:n])
        counts = class_counts(list(self.labels[i]) if self.multilabel else self.labels[i] for i in self.labelled)
        idx, _, _ = self.loop.prelabels.choose(clf, [self.texts[i] for i in rest], n, counts)
        return [rest[i] for i in idx]

    def stop(self) -> dict[str, Any]:
        from model.stopping import stop_signal  # noqa: PLC0415

        history = self.store.project_summary(self.pid)["stability"]
        return stop_signal(history, self.settings.stop_rounds, self.settings.stop_changed)

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
    """Macro F1 of the champion at each point of ``schedule``, the stopping signal's first point, and timings."""
    x_te, y_te = [texts[i] for i in test], [labels[i] for i in test]
    start = list(np.random.default_rng(seed).permutation(pool)[: schedule[0]])  # the same random start for all
    points: dict[int, float] = {}
    stopped_at = None
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prelabel-lc-") as root:
        sim = Simulation(texts, labels, multilabel, pool, seed, families, selection, Path(root))
        sim.annotate(start)
        for k, budget in enumerate(schedule):
            sim.round()
            clf = sim.champion()
            points[budget] = macro_f1(clf, x_te, y_te, multilabel) if clf is not None else 0.0
            if stopped_at is None and sim.stop()["suggested"]:
                stopped_at = budget
            if k + 1 < len(schedule):
                sim.annotate(sim.next_batch(schedule[k + 1] - len(sim.labelled)))
        family = clf.family if clf is not None else None
    logger.warning("%s %s seed %d: %s (%.0fs)", families, selection, seed,
                   " ".join(f"{b}:{f:.3f}" for b, f in points.items()), time.perf_counter() - t0)
    return {"points": points, "stop_at": stopped_at, "final_family": family,
            "seconds": round(time.perf_counter() - t0, 1)}


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
        print(f"\n## {name}: macro F1 on the test split, mean of seeds {d['seeds']}; pool {d['n_pool']} labels")  # noqa: T201
        for fams, scores in d["full"].items():
            print(f"full data with {fams}: {np.mean(scores):.3f}±{np.std(scores):.3f}")  # noqa: T201
        if d["reference"] is not None:
            print(f"reference TF-IDF + one-vs-rest LinearSVC on all the pool labels: {d['reference']:.3f}")  # noqa: T201
        print(f"target (best full-data score - 0.01): {d['target']:.3f}")  # noqa: T201
        budgets = sorted({b for t in d["table"].values() for b in t["mean"]})
        print("\n| families | selection | " + " | ".join(str(b) for b in budgets)  # noqa: T201
              + f" | labels to target | share of random's | area to {d['area_to']} | stop signal at |")
        print("|" + "---|" * (len(budgets) + 6))  # noqa: T201
        for t in d["table"].values():
            cells = [f"{t['mean'][b]:.3f}" if b in t["mean"] else "" for b in budgets]
            need = "never" if t["needed"] is None else (f"all {t['needed']}" if t["needed"] == d["n_pool"]
                                                        else str(t["needed"]))
            share = "" if t["share_of_random"] is None or t["selection"] == "random" else f"{t['share_of_random']:.2f}"
            stops = ",".join("-" if s is None else str(s) for s in t["stop_at"])
            print(f"| {t['families']} | {t['selection']} | " + " | ".join(cells)  # noqa: T201
                  + f" | {need} | {share} | {t['area']:.3f} | {stops} |")


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
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--tag", default="", help="suffix of the output files (runs of different settings side by side)")
    ap.add_argument("--report", type=Path, nargs="+", metavar="JSON",
                    help="only summarise earlier runs' learning_curves*.json (merged), run nothing")
    args = ap.parse_args(argv)
    logging.basicConfig(level="WARNING", format="%(asctime)s %(message)s")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from model.names import BATCH_MODES, FAMILIES, STRATEGIES  # noqa: PLC0415

    families = [f.strip() for f in args.families.split(";") if f.strip()]
    selections = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for fams in families:
        if bad := [f for f in fams.split(",") if f.strip() not in FAMILIES]:
            ap.error(f"unknown family {bad[0]!r}; known: {', '.join(FAMILIES)}")
    for sel in selections:
        strategy, _, batch = sel.partition("+")
        if strategy not in STRATEGIES or (batch and batch not in BATCH_MODES):
            ap.error(f"selection {sel!r}: AL_STRATEGY one of {STRATEGIES}, optionally +one of {BATCH_MODES}")
    schedule = [b for b in SCHEDULE if b <= args.max_labels]
    results: list[dict[str, Any]] = []
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "learning_curves" + (f"_{args.tag}" if args.tag else "")
    if args.report:
        for path in args.report:
            results += json.loads(path.read_text())
        return finish(merge(results), args.out, stem)
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
                r["full"][fams] = full_data(texts, labels, multilabel, pool, test, seed, fams)
                logger.warning("%s seed %d %s: full data %s", dataset, seed, fams, r["full"][fams])
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


def finish(results: list[dict[str, Any]], out: Path, stem: str) -> int:
    summary = summarise(results)
    (out / f"{stem}_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    report(summary)
    plot(summary, out / f"{stem}.png")
    print(f"\nwrote {out / (stem + '.json')}, {stem}_summary.json and {stem}.png")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
