"""Learning curves with a simulated annotator: macro F1 on a fixed test split against the number of labels,
for random selection and each uncertainty strategy, with the service's default model (the seed's RNN).

For each dataset and seed: 25 % of the rows are the test split (stratified for single-label data), the rest is
the pool. Random selection labels a random prefix of the pool. An uncertainty strategy starts from the same 20
random labels (cold start), then at each step trains the model, scores the unlabelled pool and labels the
documents the strategy picks, until the next point of the schedule. Every point retrains from scratch.

    python -m bench.learning_curves                       # all three datasets, seeds 42/43/44 (~40 min, 2 cores)
    python -m bench.learning_curves --datasets sms --seeds 42

Prints the table, the labels each strategy needs to come within 0.01 of the full-data macro F1, and writes
bench/out/learning_curves.{json,png}.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from model.evaluate import evaluate, evaluate_multilabel
from model.query import query
from model.rnn import RNNClassifier

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "out"
SCHEDULE = (20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000)
REPORT = (20, 50, 100, 200, 500, 1000, 2000, 3000)


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
    strat = None if multilabel else list(labels)
    pool, test = train_test_split(idx, test_size=0.25, stratify=strat, random_state=seed)
    return pool, test


def macro_f1(clf: RNNClassifier, texts: list[str], labels: list[Any], classes: list[str], multilabel: bool) -> float:
    pred = clf.predict(texts)
    if multilabel:
        return evaluate_multilabel(labels, pred, classes)["f1_macro"]
    return evaluate(labels, pred, classes)["f1_macro"]


CELL = {"cell": "simple_rnn"}  # the service's default family; --cell changes it


def fit(texts: list[str], labels: list[Any], seed: int) -> RNNClassifier | None:
    flat = {c for row in labels for c in row} if isinstance(labels[0], tuple) else set(labels)
    if len(flat) < 2:
        return None
    return RNNClassifier(random_state=seed, cell=CELL["cell"]).fit(texts, labels)


def run(name: str, seed: int, strategies: Sequence[str], schedule: Sequence[int]) -> dict[str, Any]:
    texts, labels, multilabel = load(name)
    pool, test = split(labels, multilabel, seed)
    classes = sorted({c for r in labels for c in r} if multilabel else set(labels))
    x_te, y_te = [texts[i] for i in test], [labels[i] for i in test]
    order = np.random.default_rng(seed).permutation(pool)
    schedule = [b for b in schedule if b <= len(pool)]
    out: dict[str, Any] = {"dataset": name, "seed": seed, "n_pool": len(pool), "n_test": len(test), "curves": {}}
    t0 = time.perf_counter()
    full = fit([texts[i] for i in pool], [labels[i] for i in pool], seed)
    out["full"] = macro_f1(full, x_te, y_te, classes, multilabel)
    logging.info("%s seed %d: full data (%d) macro F1 %.4f (%.0fs)", name, seed, len(pool), out["full"],
                 time.perf_counter() - t0)
    for strategy in strategies:
        curve: dict[int, float] = {}
        labelled = list(order[: schedule[0]])
        for k, budget in enumerate(schedule):
            if strategy == "random":
                labelled = list(order[:budget])
            clf = fit([texts[i] for i in labelled], [labels[i] for i in labelled], seed)
            curve[budget] = macro_f1(clf, x_te, y_te, classes, multilabel) if clf else 0.0
            if strategy != "random" and k + 1 < len(schedule):
                taken = set(labelled)
                rest = [i for i in order if i not in taken]
                need = schedule[k + 1] - len(labelled)
                if clf is None:  # one class only so far: keep drawing at random
                    labelled += rest[:need]
                else:
                    proba = clf.predict_proba([texts[i] for i in rest])
                    idx, _ = query(proba, need, strategy, multilabel=multilabel)
                    labelled += [rest[i] for i in idx]
        out["curves"][strategy] = curve
        logging.info("%s seed %d %s: %s", name, seed, strategy,
                     " ".join(f"{b}:{f:.3f}" for b, f in curve.items()))
    return out


def labels_needed(curve: dict[int, float], target: float, n_all: int | None = None) -> int | None:
    """The first point of the curve at or above ``target``; ``n_all`` (every label: the full-data score, which
    reaches it by definition) when a random curve never gets there; None for a strategy that does not."""
    for b in sorted(curve):
        if curve[b] >= target:
            return b
    return n_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.learning_curves", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--datasets", default="sms,ag_news,goemotions")
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--strategies", default="random,least_confidence,entropy,margin")
    ap.add_argument("--max-labels", type=int, default=1000, help="last point of the schedule (up to 3000)")
    ap.add_argument("--cell", default="simple_rnn", choices=["simple_rnn", "gru", "lstm"],
                    help="recurrent layer (default: the service default, simple_rnn)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    CELL["cell"] = args.cell
    logging.basicConfig(level="INFO", format="%(asctime)s %(message)s")
    warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")  # one-class folds at 20 labels
    strategies = args.strategies.split(",")
    schedule = [b for b in SCHEDULE if b <= args.max_labels]
    args.out.mkdir(parents=True, exist_ok=True)
    results = [run(d, int(s), strategies, schedule) for d in args.datasets.split(",") for s in args.seeds.split(",")]
    stem = "learning_curves" + ("" if args.cell == "simple_rnn" else f"_{args.cell}")
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    print(f"model: RNN with {args.cell}")
    summary = report(results, strategies, schedule)
    plot(results, strategies, schedule, args.out / f"{stem}.png")
    (args.out / f"{stem}_summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.png')}")
    return 0


def report(results: list[dict[str, Any]], strategies: Sequence[str], schedule: Sequence[int]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in dict.fromkeys(r["dataset"] for r in results):
        rs = [r for r in results if r["dataset"] == name]
        full = float(np.mean([r["full"] for r in rs]))
        print(f"\n{name}: macro F1 on the test split (mean±std over seeds {[r['seed'] for r in rs]}), "
              f"full data ({rs[0]['n_pool']} labels) {full:.3f}±{np.std([r['full'] for r in rs]):.3f}")
        print("labels  " + "  ".join(f"{s:>18}" for s in strategies))
        means: dict[str, dict[int, float]] = {}
        for s in strategies:
            means[s] = {b: float(np.mean([r["curves"][s][str(b)] if str(b) in r["curves"][s] else r["curves"][s][b]
                                          for r in rs])) for b in schedule}
        for b in schedule:
            if b not in REPORT and b != schedule[-1]:
                continue
            cells = []
            for s in strategies:
                vals = [r["curves"][s].get(b, r["curves"][s].get(str(b))) for r in rs]
                cells.append(f"{np.mean(vals):.3f}±{np.std(vals):.3f}".rjust(18))
            print(f"{b:>6}  " + "  ".join(cells))
        target = full - 0.01
        need = {s: labels_needed(means[s], target, rs[0]["n_pool"] if s == "random" else None) for s in strategies}
        rnd = need.get("random")
        print(f"labels to reach full-data macro F1 - 0.01 = {target:.3f} (mean curve; schedule {list(schedule)}):")
        for s in strategies:
            n = need[s]
            ratio = "" if s == "random" or n is None or rnd is None else f"  ({n / rnd:.2f} of random's)"
            shown = (f"all {n}" if s == "random" and n == rs[0]["n_pool"] else n) if n is not None \
                else f"> {schedule[-1]}"
            print(f"  {s:<18} {shown}{ratio}")
        summary[name] = {"full": full, "target": target, "needed": need, "means": means}
    return summary


def plot(results: list[dict[str, Any]], strategies: Sequence[str], schedule: Sequence[int], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = list(dict.fromkeys(r["dataset"] for r in results))
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        rs = [r for r in results if r["dataset"] == name]
        for s in strategies:
            m = np.array([np.mean([r["curves"][s][b] for r in rs]) for b in schedule])
            sd = np.array([np.std([r["curves"][s][b] for r in rs]) for b in schedule])
            ax.plot(schedule, m, marker="o", ms=3, label=s)
            ax.fill_between(schedule, m - sd, m + sd, alpha=0.15)
        full = np.mean([r["full"] for r in rs])
        ax.axhline(full, color="k", ls="--", lw=1, label=f"all {rs[0]['n_pool']} labels")
        ax.set_xscale("log")
        ax.set_title(f"{name} ({len(rs)} seeds)")
        ax.set_xlabel("labels used")
        ax.set_ylabel("macro F1 (test split)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
