"""Which families learn most from few labels: macro F1 on a fixed test split after 100, 200 and 300 random
labels, per family and for the service's automatic choice among a MODEL_FAMILIES setting, 3 seeds.

Each point does what a retrain does: the labels are split 80/20 into train and validation (early stopping,
multilabel thresholds), every family trains with ``model.factory.make_classifier`` and the service's parameters,
and the automatic choice is the service's rule (``model.evaluate.pick_best`` over the validation macro F1, the
ensemble of the best subset kept only when it beats each member). The test split (20 %, stratified for
single-label data, random_state 42) is never trained on. Label sets are nested: a seed's 200 labels hold its 100.

    python -m bench.few_labels                                   # ~10 min on 2 cores (MiniLM embeds ~3,000 texts)
    python -m bench.few_labels --datasets sms --sizes 50,100 --seeds 1

Prints one JSON line per point, then the median over seeds per (dataset, family, labels) as a table, and writes
bench/out/few_labels.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.learning_curves import load
from model.names import FAMILIES

OUT = Path(__file__).resolve().parent / "out"
DEFAULT_FAMILIES = "quick,rnn,embed,hybrid"
DEFAULT_AUTOS = "hybrid,quick;quick,rnn;hybrid,quick,rnn;hybrid,embed,quick;embed,quick"


def _macro_f1(clf: Any, proba: np.ndarray, labels: list[Any], multilabel: bool) -> float:
    from model.evaluate import evaluate, evaluate_multilabel  # noqa: PLC0415

    pred = clf.decide(proba)
    if multilabel:
        return float(evaluate_multilabel(labels, pred, list(clf.classes_))["f1_macro"])
    return float(evaluate(labels, pred, list(clf.classes_))["f1_macro"])


def run_point(dataset: str, texts: list[str], labels: list[Any], multilabel: bool, pool: np.ndarray,
              test: np.ndarray, n: int, seed: int, families: list[str], autos: list[list[str]],
              margin: float = 0.01) -> list[dict[str, Any]]:
    """Every family and every automatic choice trained on the first ``n`` of ``pool`` (already shuffled)."""
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    from model.ensemble import best_ensemble  # noqa: PLC0415
    from model.evaluate import pick_best  # noqa: PLC0415
    from model.factory import make_classifier  # noqa: PLC0415

    chosen = pool[:n]
    fit_i, val_i = train_test_split(chosen, test_size=0.2, random_state=seed)
    x_fit, y_fit = [texts[i] for i in fit_i], [labels[i] for i in fit_i]
    x_val, y_val = [texts[i] for i in val_i], [labels[i] for i in val_i]
    x_te, y_te = [texts[i] for i in test], [labels[i] for i in test]
    trained: dict[str, tuple[Any, np.ndarray, float, np.ndarray]] = {}  # family -> model, val proba, val F1, test proba
    rows = []
    for fam in dict.fromkeys(families + [f for a in autos for f in a]):
        clf = make_classifier(fam, random_state=42, cell="gru" if multilabel else "simple_rnn")
        t0 = time.perf_counter()
        try:
            clf.fit(x_fit, y_fit, validation=(x_val, y_val))
        except ValueError as exc:  # e.g. one class only in a tiny sample: the service skips the family too
            logging.warning("%s %s n=%d seed=%d: %s", dataset, fam, n, seed, exc)
            continue
        proba = clf.predict_proba(x_val)
        clf.tune_thresholds(x_val, y_val, proba=proba)
        seconds = time.perf_counter() - t0
        test_proba = clf.predict_proba(x_te)
        trained[fam] = (clf, proba, _macro_f1(clf, proba, y_val, multilabel), test_proba)
        if fam in families:
            rows.append({"dataset": dataset, "family": fam, "labels": n, "seed": seed,
                         "validation_f1_macro": round(trained[fam][2], 4),
                         "f1_macro": round(_macro_f1(clf, test_proba, y_te, multilabel), 4),
                         "train_s": round(seconds, 2)})
    for auto in autos:
        names = [f for f in auto if f in trained]
        if not names:
            continue
        models, probas, scores = ([trained[f][0] for f in names], [trained[f][1] for f in names],
                                  [trained[f][2] for f in names])
        tests = [trained[f][3] for f in names]
        label = None
        if len(names) > 1:
            ens, subset, ens_proba = best_ensemble(models, probas, x_val, y_val,
                                                   lambda m, p: _macro_f1(m, p, y_val, multilabel))
            ens_score = _macro_f1(ens, ens_proba, y_val, multilabel)
            if ens_score > max(scores) + margin:  # the service keeps it only when it beats every member
                label = "ensemble " + "+".join(names[i] for i in subset)
                models.append(ens), scores.append(ens_score)
                tests.append(np.mean([tests[i] for i in subset], axis=0))
        best = pick_best(scores, margin)
        rows.append({"dataset": dataset, "family": "auto of " + ",".join(auto), "labels": n, "seed": seed,
                     "chose": label if best == len(names) else names[best],
                     "validation_f1_macro": round(scores[best], 4),
                     "f1_macro": round(_macro_f1(models[best], tests[best], y_te, multilabel), 4)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.few_labels", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--datasets", default="sms,ag_news,goemotions")
    ap.add_argument("--families", default=DEFAULT_FAMILIES, help=f"some of {', '.join(FAMILIES)}")
    ap.add_argument("--auto", default=DEFAULT_AUTOS,
                    help="MODEL_FAMILIES settings whose automatic choice is measured, separated by ';'")
    ap.add_argument("--sizes", default="100,200,300", help="numbers of random labels")
    ap.add_argument("--seeds", default="42,43,44")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level="WARNING", format="%(message)s")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    families = [f for f in args.families.split(",") if f]
    autos = [[f for f in a.split(",") if f] for a in args.auto.split(";") if a.strip()]
    for fam in families + [f for a in autos for f in a]:
        if fam not in FAMILIES:
            ap.error(f"unknown family {fam!r}; known: {', '.join(FAMILIES)}")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    rows: list[dict[str, Any]] = []
    for dataset in args.datasets.split(","):
        texts, labels, multilabel = load(dataset)
        idx = np.arange(len(labels))
        pool, test = train_test_split(idx, test_size=0.2, stratify=None if multilabel else labels, random_state=42)
        for seed in (int(s) for s in args.seeds.split(",")):
            order = np.random.default_rng(seed).permutation(pool)
            for n in sizes:
                for row in run_point(dataset, texts, labels, multilabel, order, test, n, seed, families, autos):
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "few_labels.json").write_text(json.dumps(rows, indent=1))
    groups: dict[tuple[str, str], dict[int, list[float]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["family"]), {}).setdefault(r["labels"], []).append(r["f1_macro"])
    head = "| dataset | family | " + " | ".join(f"{n} labels" for n in sizes) + " |"
    print("\nmacro F1 on the test split, median of the seeds\n" + head + "\n|" + "---|" * (2 + len(sizes)))
    for (dataset, fam), by_n in groups.items():
        cells = [f"{statistics.median(by_n[n]):.3f}" if n in by_n else "" for n in sizes]
        print(f"| {dataset} | {fam} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
