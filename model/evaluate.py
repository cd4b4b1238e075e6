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


def evaluate_multilabel(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], classes: Sequence[str],
                        *, proba: np.ndarray | None = None, ids: Sequence[str] | None = None,
                        dataset: str = "validation") -> dict[str, Any]:
    """Multilabel scores: per-label precision/recall/F1/support (precision None for a label never predicted),
    F1 micro/macro/weighted over labels, subset accuracy, Hamming loss, macro MCC (mean of per-label MCC),
    a 2x2 confusion matrix per label, and the documents whose label set was wrong."""
    from sklearn.metrics import hamming_loss, multilabel_confusion_matrix  # noqa: PLC0415
    from sklearn.preprocessing import MultiLabelBinarizer  # noqa: PLC0415

    labels = list(classes)
    out: dict[str, Any] = {"dataset": dataset, "n": len(y_true), "multilabel": True}
    if not len(y_true):
        return {**out, "note": f"no {dataset} documents yet"}
    mlb = MultiLabelBinarizer(classes=labels)
    yt = mlb.fit_transform([[str(c) for c in row] for row in y_true])
    yp = mlb.transform([[str(c) for c in row] for row in y_pred])
    p, r, f, s = precision_recall_fscore_support(yt, yp, zero_division=np.nan)
    mccs = [float(matthews_corrcoef(yt[:, j], yp[:, j])) for j in range(len(labels))]
    out.update({
        "accuracy": float(accuracy_score(yt, yp)),  # subset accuracy: the whole label set right
        "hamming_loss": float(hamming_loss(yt, yp)),
        "mcc": float(np.mean(mccs)),
        "f1_micro": float(f1_score(yt, yp, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(yt, yp, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(yt, yp, average="weighted", zero_division=0)),
        "per_class": {c: {"precision": _defined(p[j]), "recall": _defined(r[j]), "f1": float(np.nan_to_num(f[j])),
                          "support": int(s[j]), "mcc": mccs[j]} for j, c in enumerate(labels)},
        "confusion_matrix": {"labels": labels, "per_label": "[[tn, fp], [fn, tp]]",
                             "matrix": multilabel_confusion_matrix(yt, yp).tolist()},
    })
    out["f1"] = out["f1_macro"]
    if ids is not None:
        out["false_predictions"] = [
            {"id": ids[i], "true": sorted(map(str, y_true[i])), "predicted": sorted(map(str, y_pred[i])),
             "probability": [round(float(x), 4) for x in proba[i]] if proba is not None else None}
            for i in range(len(y_true)) if set(map(str, y_true[i])) != set(map(str, y_pred[i]))]
    return out


def pick_best(values: Sequence[float | None], margin: float) -> int:
    """The index of the first value within ``margin`` of the largest (None counts as 0). Candidates are listed in
    order of preference (MODEL_FAMILIES order, then the ensemble), and a validation split of a few hundred
    documents cannot rank models whose scores differ by less than a document or two: within that noise the
    preferred one wins, as the promotion gate lets a candidate within the margin replace the champion."""
    scores = [v or 0.0 for v in values]
    top = max(scores)
    return next(i for i, v in enumerate(scores) if v >= top - margin)


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


def is_holdout(platform_id: str, fraction: float) -> bool:
    """A document's split is fixed by its id, so every version is scored on the same kind of held-out slice and
    a document never moves from held-out into training."""
    import hashlib  # noqa: PLC0415

    h = int(hashlib.sha256(platform_id.encode("utf-8")).hexdigest()[:8], 16) % 10_000
    return h < fraction * 10_000
