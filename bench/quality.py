"""RNN quality on SMS spam: stratified 80/20 with seeds 42, 43, 44 (split and weights); accuracy and spam F1.

    python -m bench.quality [--cell simple_rnn|gru|lstm] [--epochs 10]
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

from model.evaluate import evaluate, stratified_split
from model.rnn import RNNClassifier

SMS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "sms_spam" / "sms_spam.csv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SMS)
    ap.add_argument("--cell", default="simple_rnn", choices=["simple_rnn", "gru", "lstm"])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seeds", default="42,43,44")
    args = ap.parse_args(argv)
    logging.basicConfig(level="WARNING")
    df = pd.read_csv(args.data, keep_default_na=False)
    texts, labels = df.text.tolist(), df.label.tolist()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        tr, te = stratified_split(labels, 0.2, seed)
        t0 = time.perf_counter()
        clf = RNNClassifier(cell=args.cell, epochs=args.epochs, random_state=seed)
        clf.fit([texts[i] for i in tr], [labels[i] for i in tr])
        fit_s = time.perf_counter() - t0
        m = evaluate([labels[i] for i in te], clf.predict([texts[i] for i in te]), clf.classes_, "spam")
        rows.append({"seed": seed, "n_train": len(tr), "n_test": len(te), "accuracy": round(m["accuracy"], 4),
                     "spam_precision": round(m["per_class"]["spam"]["precision"], 4),
                     "spam_recall": round(m["per_class"]["spam"]["recall"], 4), "spam_f1": round(m["f1"], 4),
                     "train_s": round(fit_s, 1)})
        print(f"seed {seed}: accuracy {m['accuracy']:.4f}  spam F1 {m['f1']:.4f}  "
              f"(P {m['per_class']['spam']['precision']:.3f} R {m['per_class']['spam']['recall']:.3f})  "
              f"train {fit_s:.1f}s", flush=True)
    med = statistics.median(r["spam_f1"] for r in rows)
    print(f"median spam F1 {med:.4f} (goal >= 0.95); median accuracy "
          f"{statistics.median(r['accuracy'] for r in rows):.4f}; cell {args.cell}, epochs {args.epochs}")
    print(json.dumps({"runs": rows, "median_spam_f1": med}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
