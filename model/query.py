"""Active-learning query strategies: score with a fitted model, never train it."""
from __future__ import annotations

import numpy as np


def least_confidence(proba: np.ndarray) -> np.ndarray:
    """Uncertainty of each row: 1 - max class probability (higher = less sure)."""
    return 1.0 - np.max(proba, axis=1)


def select_least_confident(proba: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` rows the model is least sure about, least confident first (ties by index)."""
    if k <= 0 or len(proba) == 0:
        return np.zeros(0, dtype=int)
    scores = least_confidence(proba)
    order = np.lexsort((np.arange(len(scores)), -scores))
    return order[:k]
