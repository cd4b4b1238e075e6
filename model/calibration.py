"""Scores that are probabilities: calibration fitted on out-of-fold predictions, and how far from it a model is.

Each family's own probabilities are calibrated on its training data at best, and an ensemble's mean of a sure
member and an unsure one is calibrated by neither (measured: hybrid ECE 0.037, quick 0.010, their mean 0.097). So
the training round fits one calibrator per served model on its **out-of-fold** probabilities over every label
(cross-fitting: each label predicted by a model that never saw it), and the served model applies it:

* single-label: temperature scaling of the log-probabilities (Guo et al. 2017), one parameter: the ranking and the
  predicted class are unchanged, only how sure the score is;
* multilabel: one Platt scaling per label (``sigmoid(a * logit(p) + b)``), each label on its own.

``ece`` is the expected calibration error with 10 equal-width bins; ``reliability`` the bins behind it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .base import TextClassifier

EPS = 1e-6
BINS = 10


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, EPS, 1.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(proba: np.ndarray, y: Sequence[int], weights: np.ndarray | None = None) -> float:
    """The temperature T minimising the (``weights``-weighted) log-loss of ``softmax(log(proba) / T)`` on
    (out-of-fold) ``proba`` with true class indices ``y``; 1.0 when there is nothing to fit."""
    from scipy.optimize import minimize_scalar  # noqa: PLC0415

    proba, y = np.asarray(proba, dtype="float64"), np.asarray(y, dtype=int)
    if len(y) < 2 or proba.shape[1] < 2:
        return 1.0
    logp = _log(proba)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype="float64")

    def nll(log_t: float) -> float:
        q = _softmax(logp / np.exp(log_t))
        return float(-np.average(np.log(np.clip(q[np.arange(len(y)), y], 1e-12, 1.0)), weights=w))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x)) if res.success else 1.0


def fit_platt(p: np.ndarray, y: np.ndarray, min_each: int = 3, weights: np.ndarray | None = None
              ) -> tuple[float, float]:
    """(a, b) of ``sigmoid(a * logit(p) + b)`` fitted by logistic regression on one label's (out-of-fold) scores;
    (1, 0), no change, when the label has fewer than ``min_each`` positives or negatives."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    y = np.asarray(y, dtype=bool)
    if y.sum() < min_each or (~y).sum() < min_each:
        return 1.0, 0.0
    p = np.clip(np.asarray(p, dtype="float64"), EPS, 1 - EPS)
    x = np.log(p / (1 - p)).reshape(-1, 1)
    lr = LogisticRegression(C=1e4).fit(x, y, sample_weight=weights)
    a = float(lr.coef_[0, 0])
    return (a, float(lr.intercept_[0])) if a > 0 else (1.0, 0.0)  # never invert a label's ranking


def fit(proba: np.ndarray, y: Sequence[Any], classes: Sequence[str], multilabel: bool,
        weights: np.ndarray | None = None) -> dict[str, Any]:
    """A calibrator (JSON-able) from out-of-fold ``proba`` (columns follow ``classes``) and the true labels (class
    names, or tuples of names for a multilabel scheme). ``weights``: per label (model/estimate.corpus_weights: the
    random labels also speak for the pool, where the scores are shown, since the labels active learning picked
    are the hard ones: a temperature fitted on them alone made AG News's scores 0.06 too modest on new text)."""
    classes = [str(c) for c in classes]
    weighted = {"weighted": True} if weights is not None else {}
    if multilabel:
        truth = np.array([[c in {str(v) for v in row} for c in classes] for row in y], dtype=bool)
        ab = [fit_platt(proba[:, j], truth[:, j], weights=weights) for j in range(len(classes))]
        return {"kind": "platt", "a": [a for a, _ in ab], "b": [b for _, b in ab], "n": len(y), **weighted}
    index = {c: i for i, c in enumerate(classes)}
    return {"kind": "temperature", "t": fit_temperature(proba, [index[str(v)] for v in y], weights), "n": len(y),
            **weighted}


def apply(calibration: dict[str, Any] | None, proba: np.ndarray) -> np.ndarray:
    """``proba`` through a calibrator from ``fit`` (None: unchanged)."""
    proba = np.asarray(proba, dtype="float64")
    if not calibration or len(proba) == 0:
        return proba
    if calibration["kind"] == "temperature":
        return _softmax(_log(proba) / float(calibration["t"]))
    p = np.clip(proba, EPS, 1 - EPS)
    z = np.log(p / (1 - p)) * np.asarray(calibration["a"]) + np.asarray(calibration["b"])
    return 1.0 / (1.0 + np.exp(-z))


def shown(proba: np.ndarray, y: Sequence[Any], classes: Sequence[str], multilabel: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    """(score shown, whether it was right) per prediction: single-label, the top class's probability and whether
    that class is the true one; multilabel, every label's probability and whether the document has it."""
    classes = [str(c) for c in classes]
    proba = np.asarray(proba, dtype="float64")
    if multilabel:
        truth = np.array([[c in {str(v) for v in row} for c in classes] for row in y], dtype=bool)
        return proba.ravel(), truth.ravel()
    top = proba.argmax(axis=1)
    return proba.max(axis=1), np.array([classes[k] == str(t) for k, t in zip(top, y)])


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """Equal-width bins of the scores: per bin, how many, their mean score and how many were right."""
    conf, correct = np.asarray(conf, dtype="float64"), np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(m.sum()),
                    "confidence": float(conf[m].mean()) if m.any() else None,
                    "accuracy": float(correct[m].mean()) if m.any() else None})
    return out


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the mean over bins of |accuracy - mean score|, weighted by the bin's size."""
    n = len(conf)
    if n == 0:
        return float("nan")
    return float(sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in reliability(conf, correct, bins)
                     if b["n"]))


class CalibratedClassifier(TextClassifier):
    """A fitted model whose ``predict_proba`` goes through a calibrator (``fit``'s dict). Everything else is the
    inner model's: its family, classes, files (``save`` writes the inner model; the calibrator goes in the version's
    meta.json, and ``model.factory.load_classifier`` wraps the model again)."""

    def __init__(self, inner: TextClassifier, calibration: dict[str, Any]) -> None:
        self.inner = inner
        self.calibration_ = calibration
        self.classes_ = inner.classes_
        self.multilabel_ = bool(getattr(inner, "multilabel_", False))
        if getattr(inner, "thresholds_", None) is not None:
            self.thresholds_ = inner.thresholds_

    @property
    def family(self) -> str:  # type: ignore[override]
        return self.inner.family

    def __getattr__(self, name: str) -> Any:  # history_, estimator_, encoder...: the inner model's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def fit(self, texts: Sequence[str], labels: Sequence[Any], *,
            validation: tuple[Sequence[str], Sequence[Any]] | None = None) -> "CalibratedClassifier":
        raise TypeError("a calibrated model is fitted by the training round: fit the inner model")

    def refit(self, texts: Sequence[str], labels: Sequence[Any], epochs: int = 1, *, lr_factor: float = 0.1,
              validation: tuple[Sequence[str], Sequence[Any]] | None = None) -> TextClassifier:
        """A warm retrain trains the inner model and returns it: its calibration is fitted again by the round."""
        return self.inner.refit(texts, labels, epochs, lr_factor=lr_factor, validation=validation)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return apply(self.calibration_, self.inner.predict_proba(texts))

    def get_params(self) -> dict[str, Any]:
        return self.inner.get_params()

    def save(self, folder: Path) -> None:
        self.inner.save(folder)

    @classmethod
    def load(cls, folder: Path) -> "CalibratedClassifier":
        raise TypeError("load calibrated versions with model.factory.load_classifier")


def uncalibrated(model: Any) -> Any:
    """The model under a calibration wrapper (itself when there is none)."""
    return model.inner if isinstance(model, CalibratedClassifier) else model


__all__ = ["CalibratedClassifier", "apply", "ece", "fit", "reliability", "shown", "uncalibrated"]
