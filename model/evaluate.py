"""Scores of a classifier on one labelled set, as plain JSON-able dicts (sklearn.metrics underneath)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, matthews_corrcoef,
                             precision_recall_fscore_support)


def _defined(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def evaluate(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str], positive: str | None = None, *,
             proba: np.ndarray | None = None, ids: Sequence[str] | None = None,
             dataset: str = "validation") -> dict[str, Any]:
    """Accuracy, Matthews correlation, F1 (micro/macro/weighted), per-class precision/recall/F1/support, the
    confusion matrix and the false predictions, computed on one set named by ``dataset``.

    ``f1`` is the headline: the ``positive`` class's F1 for a binary scheme (e.g. spam), macro F1 otherwise.
    A class that is never predicted has an undefined precision (None, not 1 nor 0); one absent from ``y_true``
    has an undefined recall. Averages treat undefined parts as 0, as sklearn does by default.
    """
    labels = list(classes)
    y_true, y_pred = [str(y) for y in y_true], [str(y) for y in y_pred]
    out: dict[str, Any] = {"dataset": dataset, "n": len(y_true)}
    if not y_true:
        return {**out, "note": f"no {dataset} documents yet"}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=np.nan)
    per_class = {c: {"precision": _defined(p[i]), "recall": _defined(r[i]), "f1": float(np.nan_to_num(f[i])),
                     "support": int(s[i])} for i, c in enumerate(labels)}
    out.update({
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "f1_micro": float(f1_score(y_true, y_pred, labels=labels, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": {"labels": labels, "rows": "true", "columns": "predicted",
                             "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
    })
    if positive is not None and positive in per_class:
        out["positive"] = positive
        out["f1"] = per_class[positive]["f1"]
    else:
        out["f1"] = out["f1_macro"]
    if ids is not None:
        index = {c: i for i, c in enumerate(labels)}
        out["false_predictions"] = [
            {"id": ids[i], "true": t, "predicted": pr,
             "probability": float(proba[i][index[pr]]) if proba is not None else None}
            for i, (t, pr) in enumerate(zip(y_true, y_pred)) if t != pr]
    return out


def positive_class(classes: Sequence[str]) -> str | None:
    """The class whose F1 is the headline of a binary scheme: ``true`` for a boolean label, else conventional
    names (spam, positive, 1, yes), else None (macro F1)."""
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
