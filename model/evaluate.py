"""Scores of a classifier on held-out data, as plain JSON-able dicts."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def evaluate(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str],
             positive: str | None = None) -> dict[str, Any]:
    """Accuracy, F1 (micro/macro/weighted), per-class precision/recall/F1/support and the confusion matrix.

    ``f1`` is the headline: the ``positive`` class's F1 for a binary scheme (e.g. spam), macro F1 otherwise.
    """
    labels = list(classes)
    y_true, y_pred = [str(y) for y in y_true], [str(y) for y in y_pred]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                 for i, c in enumerate(labels)}
    out: dict[str, Any] = {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)) if y_true else 0.0,
        "f1_micro": float(f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": {"labels": labels,
                             "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist() if y_true else []},
    }
    if positive is not None and positive in per_class:
        out["positive"] = positive
        out["f1"] = per_class[positive]["f1"]
    else:
        out["f1"] = out["f1_macro"]
    return out


def positive_class(classes: Sequence[str]) -> str | None:
    """The class whose F1 is the headline of a binary scheme: ``true`` for a boolean label, else the rarer-looking
    conventional names (spam, pos, 1), else None (macro F1)."""
    cs = [str(c) for c in classes]
    if len(cs) != 2:
        return None
    for cand in ("true", "spam", "positive", "pos", "1", "yes"):
        if cand in cs:
            return cand
    return None


def stratified_split(labels: Sequence[str], test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    idx = np.arange(len(labels))
    return tuple(train_test_split(idx, test_size=test_size, stratify=list(labels), random_state=seed))  # type: ignore
