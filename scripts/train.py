"""Train an initial model from a labelled CSV (the seed's "model initialization") and save it as a version
folder: model.h5 + vocab.json + rnn.json + meta.json.

    python -m scripts.train ../shared/data/sms_spam/sms_spam.csv --out models/sms-v1

Prints held-out scores (a stratified split, --test-size) as JSON. --test-size 0 trains on every row.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from model.evaluate import evaluate, positive_class, stratified_split
from model.factory import FAMILIES, make_classifier
from model.factory import save_version

logger = logging.getLogger(__name__)


def read_labelled_csv(path: Path, text_col: str, label_col: str) -> tuple[list[str], list[str]]:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in (text_col, label_col) if c not in df.columns]
    if missing:
        raise SystemExit(f"error: {path} has no column(s) {missing}; columns: {list(df.columns)}")
    df = df[df[label_col].str.strip() != ""]
    return df[text_col].tolist(), df[label_col].str.strip().tolist()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.train", description=__doc__.split("\n\n")[0],
                                 epilog="Example: python -m scripts.train data.csv --out models/v1 --epochs 10")
    ap.add_argument("csv", type=Path, help="CSV with a text column and a label column")
    ap.add_argument("--out", type=Path, required=True, help="folder to write the model version into (new)")
    ap.add_argument("--text-col", default="text", help="text column (default: text)")
    ap.add_argument("--label-col", default="label", help="label column (default: label)")
    ap.add_argument("--family", default="rnn", choices=FAMILIES, help="model family (default: rnn)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--cell", default="simple_rnn", choices=["simple_rnn", "gru", "lstm"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--test-size", type=float, default=0.2, help="held-out fraction for the printed scores")
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(message)s")
    if args.out.exists():
        ap.error(f"{args.out} exists; choose a new folder")
    texts, labels = read_labelled_csv(args.csv, args.text_col, args.label_col)
    if len(set(labels)) < 2:
        ap.error(f"need at least two labels in {args.label_col!r}, found {sorted(set(labels))}")
    if args.test_size > 0:
        tr, te = stratified_split(labels, args.test_size, args.seed)
    else:
        tr, te = list(range(len(texts))), []
    t0 = time.perf_counter()
    clf = make_classifier(args.family, epochs=args.epochs, cell=args.cell, random_state=args.seed)
    clf.fit([texts[i] for i in tr], [labels[i] for i in tr])
    seconds = time.perf_counter() - t0
    metrics = evaluate([labels[i] for i in te], clf.predict([texts[i] for i in te]), clf.classes_,
                       positive_class(clf.classes_)) if len(te) else {}
    meta = {"family": clf.family, "version": 0, "classes": list(clf.classes_), "params": clf.get_params(),
            "metrics": metrics, "n_train": len(tr), "n_holdout": len(te), "train_seconds": seconds,
            "source": str(args.csv)}
    folder = save_version(clf, args.out.parent, args.out.name, meta)
    json.dump({"model": str(folder), "n_train": len(tr), "n_holdout": len(te), "train_seconds": round(seconds, 1),
               **{k: metrics[k] for k in ("accuracy", "f1", "f1_macro", "per_class") if k in metrics}},
              sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
