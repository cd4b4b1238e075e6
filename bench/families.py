"""Model families side by side: quality, training time, scoring throughput, single-text latency, peak memory
and model size, on sms_spam, ag_news and goemotions (80/20 split, stratified for single-label, random_state 42).

Each (family, dataset) runs in its own process, so its peak memory (ru_maxrss) is its own. A family trains on
the whole training split; for the multilabel dataset 10 % of it is held out to tune the per-label thresholds, as
the service does on its validation split.

``auto`` is what the service does: every listed family trains on 80 % of the training split (with the other 20 %
as validation: early stopping, thresholds), the ensemble of the best subset is tried, the candidate chosen by the
service's rule (``model.evaluate.pick_best``: the first listed within SELECTION_MARGIN of the best validation
macro F1) is scored on the test split.

    python -m bench.families                       # every family on the three datasets (bert: minutes)
    python -m bench.families --datasets sms --families hybrid,quick,rnn
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.learning_curves import load
from model.names import FAMILIES


def _score(clf: Any, texts: list[str], labels: list[Any], multilabel: bool) -> dict[str, float]:
    from model.evaluate import evaluate, evaluate_multilabel, positive_class  # noqa: PLC0415

    pred = clf.predict(texts)
    if multilabel:
        m = evaluate_multilabel(labels, pred, list(clf.classes_))
        return {"f1_macro": m["f1_macro"], "f1_micro": m["f1_micro"]}
    m = evaluate(labels, pred, list(clf.classes_), positive_class(clf.classes_))
    out = {"f1_macro": m["f1_macro"], "accuracy": m["accuracy"]}
    if "spam" in clf.classes_:
        out["spam_f1"] = m["per_class"]["spam"]["f1"]
    return out


def _split(labels: list[Any], multilabel: bool, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    idx = np.arange(len(labels))
    return train_test_split(idx, test_size=0.2, stratify=None if multilabel else labels, random_state=seed)


def uncached(clf: Any) -> None:
    """The first-fit cost: nothing embedded in memory, nothing read from an embedding file."""
    if hasattr(clf, "encoder"):
        clf.encoder.cache.clear()
        clf.encoder.store = None


def run_one(family: str, dataset: str, max_train: int) -> dict[str, Any]:
    """Train ``family`` on ``dataset`` and measure it; runs in a child process."""
    from model.factory import load_classifier, make_classifier  # noqa: PLC0415
    from model.factory import save_version  # noqa: PLC0415

    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    texts, labels, multilabel = load(dataset)
    tr, te = _split(labels, multilabel)
    tr = tr[:max_train] if max_train else tr
    val: list[int] = []
    if multilabel:  # thresholds are tuned on held-out labels
        tr, val = train_test_split(tr, test_size=0.1, random_state=42)
    x_tr, y_tr = [texts[i] for i in tr], [labels[i] for i in tr]
    x_te, y_te = [texts[i] for i in te], [labels[i] for i in te]
    clf = make_classifier(family, random_state=42, cell="gru" if multilabel else "simple_rnn")
    t0 = time.perf_counter()
    clf.fit(x_tr, y_tr)
    if len(val):
        clf.tune_thresholds([texts[i] for i in val], [labels[i] for i in val])
    train_s = time.perf_counter() - t0
    quality = _score(clf, x_te, y_te, multilabel)
    uncached(clf)  # embed caches embeddings by text: time the work, not the cache
    t0 = time.perf_counter()
    clf.predict_proba(x_te)
    throughput = len(x_te) / (time.perf_counter() - t0)
    one = []
    for t in x_te[:50]:
        uncached(clf)
        t0 = time.perf_counter()
        clf.predict_proba([t])
        one.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as d:
        folder = save_version(clf, Path(d), "v1", {"family": family})
        size = sum(f.stat().st_size for f in folder.iterdir())
        same = np.allclose(load_classifier(folder).predict_proba(x_te[:200]), clf.predict_proba(x_te[:200]),
                           atol=1e-5)
    return {"family": family, "dataset": dataset, "n_train": len(x_tr), "n_test": len(x_te), **quality,
            "train_s": round(train_s, 2), "texts_per_s": round(throughput), "one_text_ms": round(
                1000 * statistics.median(one), 2), "peak_rss_mb": round(resource.getrusage(
                    resource.RUSAGE_SELF).ru_maxrss / 1024), "model_mb": round(size / 1e6, 2), "reload_same": same}


def run_auto(families: list[str], dataset: str, max_train: int, margin: float = 0.01) -> dict[str, Any]:
    """The service's choice among ``families`` and their ensemble (worker.loop.training's rule), on the test split."""
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    from model.ensemble import best_ensemble  # noqa: PLC0415
    from model.evaluate import pick_best  # noqa: PLC0415
    from model.factory import make_classifier  # noqa: PLC0415

    texts, labels, multilabel = load(dataset)
    tr, te = _split(labels, multilabel)
    tr = tr[:max_train] if max_train else tr
    fit_i, val_i = train_test_split(tr, test_size=0.2, random_state=42,
                                    stratify=None if multilabel else [labels[i] for i in tr])
    x_val, y_val = [texts[i] for i in val_i], [labels[i] for i in val_i]

    def value(model: Any, proba: np.ndarray) -> float:
        return _score_proba(model, proba, y_val, multilabel)["f1_macro"]

    names, models, probas, scores = [], [], [], []
    for fam in families:
        clf = make_classifier(fam, random_state=42, cell="gru" if multilabel else "simple_rnn")
        clf.fit([texts[i] for i in fit_i], [labels[i] for i in fit_i], validation=(x_val, y_val))
        proba = clf.predict_proba(x_val)
        clf.tune_thresholds(x_val, y_val, proba=proba)
        names.append(fam), models.append(clf), probas.append(proba), scores.append(value(clf, proba))
    if len(models) > 1:
        ens, subset, proba = best_ensemble(models, probas, x_val, y_val, value)
        if value(ens, proba) > max(scores) + margin:  # the service keeps it only when clearly better
            names.append("ensemble " + "+".join(names[i] for i in subset))
            models.append(ens), scores.append(value(ens, proba))
    best = pick_best(scores, margin)
    return {"family": f"auto ({names[best]})", "dataset": dataset, "validation_f1_macro": round(scores[best], 4),
            "validation": {n: round(s, 4) for n, s in zip(names, scores)},
            **_score(models[best], [texts[i] for i in te], [labels[i] for i in te], multilabel)}


def _score_proba(clf: Any, proba: np.ndarray, labels: list[Any], multilabel: bool) -> dict[str, float]:
    from model.evaluate import evaluate, evaluate_multilabel  # noqa: PLC0415

    pred = clf.decide(proba)
    if multilabel:
        return {"f1_macro": evaluate_multilabel(labels, pred, list(clf.classes_))["f1_macro"]}
    return {"f1_macro": evaluate(labels, pred, list(clf.classes_))["f1_macro"]}


def _child(fn: str, args: tuple, q: Any) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    q.put(globals()[fn](*args))


def in_child(fn: str, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.families", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="sms,ag_news,goemotions")
    ap.add_argument("--families", default=",".join(FAMILIES), help=f"some of {', '.join(FAMILIES)}")
    ap.add_argument("--max-train", type=int, default=0, help="cap on training texts (0 = all)")
    ap.add_argument("--auto", default="quick,rnn;hybrid,quick,rnn",
                    help="MODEL_FAMILIES settings (in order of preference) whose automatic choice is measured, "
                         "separated by ';' (default: the default setting, and the recommended one with the opt-in "
                         "packages)")
    ap.add_argument("--no-auto", action="store_true", help="skip the automatic choice")
    args = ap.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    autos = [[f for f in a.split(",") if f] for a in args.auto.split(";") if a.strip()]
    for fam in families + [f for a in autos for f in a]:
        if fam not in FAMILIES:
            ap.error(f"unknown family {fam!r}; known: {', '.join(FAMILIES)}")
    rows = []
    for dataset in args.datasets.split(","):
        for fam in families:
            rows.append(in_child("run_one", fam, dataset, args.max_train))
            print(json.dumps(rows[-1]), flush=True)
        for auto in [] if args.no_auto else autos:
            rows.append(in_child("run_auto", auto, dataset, args.max_train))
            rows[-1]["family"] = f"{rows[-1]['family']} of {','.join(auto)}"
            print(json.dumps(rows[-1]), flush=True)
    cols = ["dataset", "family", "spam_f1", "f1_macro", "train_s", "texts_per_s", "one_text_ms", "peak_rss_mb",
            "model_mb"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(
            f"{r[c]:.3f}" if isinstance(r.get(c), float) and c in ("spam_f1", "f1_macro") else str(r.get(c, ""))
            for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
