"""Active-learning query strategies: score documents with a fitted model's probabilities, never train it.

Single-label ``proba`` rows sum to 1 over classes. Multilabel rows hold one independent sigmoid per label; a
document's uncertainty is then the **mean over labels** of that label's binary uncertainty (so one very
uncertain label among many counts less than several moderately uncertain ones).
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from .names import STRATEGIES, UNCERTAINTY  # noqa: F401 - re-exported


class QueryError(ValueError):
    """A query that cannot be run as asked (unknown strategy, bad n, bad regex, unknown label)."""


def _binary(p: np.ndarray) -> np.ndarray:
    """(n, L) sigmoid outputs -> (n, L, 2) per-label distributions."""
    return np.stack([1.0 - p, p], axis=-1)


def least_confidence(proba: np.ndarray, multilabel: bool = False) -> np.ndarray:
    """1 - the probability of the predicted class (higher = less sure)."""
    if multilabel:
        return (1.0 - _binary(proba).max(axis=-1)).mean(axis=1)
    return 1.0 - np.max(proba, axis=1)


def entropy(proba: np.ndarray, multilabel: bool = False) -> np.ndarray:
    """Shannon entropy of the predicted distribution (nats)."""
    p = np.clip(_binary(proba) if multilabel else proba, 1e-12, 1.0)
    h = -(p * np.log(p)).sum(axis=-1)
    return h.mean(axis=1) if multilabel else h


def margin(proba: np.ndarray, multilabel: bool = False) -> np.ndarray:
    """Breaking ties: 1 - (top probability - second probability); higher = closer tie."""
    if multilabel:
        return (1.0 - np.abs(2.0 * proba - 1.0)).mean(axis=1)
    top2 = np.sort(proba, axis=1)[:, -2:] if proba.shape[1] > 1 else np.hstack([np.zeros_like(proba), proba])
    return 1.0 - (top2[:, 1] - top2[:, 0])


def scores_for(strategy: str, proba: np.ndarray, *, multilabel: bool = False, label_index: int | None = None,
               seed: int = 0) -> np.ndarray:
    """A score per row, higher = pick first."""
    n = len(proba)
    if strategy == "random":
        return np.random.default_rng(seed).random(n)
    if strategy == "deterministic":  # corpus order: earlier rows first
        return -np.arange(n, dtype=float)
    if strategy == "least_confidence":
        return least_confidence(proba, multilabel)
    if strategy == "entropy":
        return entropy(proba, multilabel)
    if strategy == "margin":
        return margin(proba, multilabel)
    if strategy == "maxprob":
        if label_index is None:
            raise QueryError("strategy maxprob needs a label")
        return proba[:, label_index]
    raise QueryError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")


def compile_regex(pattern: str | None) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise QueryError(f"regex {pattern!r} does not compile: {exc}") from None


def query(proba: np.ndarray, n: int, strategy: str, *, texts: Sequence[str] | None = None,
          regex: str | None = None, multilabel: bool = False, label_index: int | None = None,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``n`` rows to annotate next, best first, and their scores. ``regex`` keeps only rows whose
    text matches (``re.search``). Ties are broken by row order."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise QueryError(f"n must be a non-negative integer, got {n!r}")
    if strategy not in STRATEGIES:
        raise QueryError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    pattern = compile_regex(regex)
    scores = scores_for(strategy, proba, multilabel=multilabel, label_index=label_index, seed=seed)
    keep = np.arange(len(scores))
    if pattern is not None:
        if texts is None:
            raise QueryError("a regex needs the texts")
        keep = np.array([i for i in keep if pattern.search(texts[i])], dtype=int)
    if n == 0 or len(keep) == 0:
        return np.zeros(0, dtype=int), np.zeros(0)
    order = keep[np.lexsort((keep, -scores[keep]))][:n]
    return order, scores[order]

