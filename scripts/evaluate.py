"""Evaluate a saved model version folder on a labelled CSV; prints accuracy, F1 (micro/macro/weighted),
per-label precision/recall/F1 and the confusion matrix as JSON.

    python -m scripts.evaluate instance/models/tagtog-alice-spam/v3 ../shared/data/sms_spam/sms_spam.csv
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from model.evaluate import evaluate, positive_class
from model.factory import load_classifier
from model.names import plain
from scripts.train import read_labelled_csv


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="model version folder (holds meta.json and model.h5)")
    ap.add_argument("csv", type=Path, help="CSV with a text column and a label column")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--label-col", default="label")
    ap.add_argument("--positive", default=None, help="class whose F1 is the headline (default: guessed)")
    args = ap.parse_args(argv)
    logging.basicConfig(level="WARNING", format="%(message)s")
    if not (args.model / "meta.json").exists():
        ap.error(f"{args.model} is not a model version folder (no meta.json)")
    clf = load_classifier(args.model)
    texts, labels = read_labelled_csv(args.csv, args.text_col, args.label_col)
    unknown = sorted(set(labels) - set(clf.classes_))
    if unknown:
        ap.error(f"labels {plain(unknown)} are not among the model's classes {plain(clf.classes_)}")
    m = evaluate(labels, clf.predict(texts), clf.classes_, args.positive or positive_class(clf.classes_))
    json.dump(m, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
