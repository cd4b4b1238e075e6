"""The classifier interface every model family implements (scikit-learn shape)."""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import numpy as np


class NotFittedError(ValueError):
    """The classifier was used before ``fit``."""


class TextClassifier(ABC):
    """``fit(texts, labels)`` returns self; ``predict_proba`` columns follow ``classes_`` (sorted strings)."""

    family: str = ""
    classes_: np.ndarray

    @abstractmethod
    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "TextClassifier": ...

    @abstractmethod
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write the fitted model into ``folder`` (which exists and is empty)."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path) -> "TextClassifier": ...

    def _set_classes(self, texts: Sequence[str], labels: Sequence[Any]) -> None:
        """``classes_`` and ``multilabel_`` from the labels (class names, or tuples of names per text)."""
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        self.multilabel_ = is_multilabel(labels)
        names = {str(x) for row in labels for x in row} if self.multilabel_ else {str(y) for y in labels}
        if len(names) < 2:
            raise ValueError(f"need at least 2 classes to train, got {sorted(names)}")
        self.classes_ = np.array(sorted(names))

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def predict(self, texts: Sequence[str]) -> Any:
        """Class names; for a multilabel model, a tuple of the labels whose probability is >= 0.5 per text."""
        proba = self.predict_proba(texts)
        if getattr(self, "multilabel_", False):
            return [tuple(self.classes_[j] for j in np.flatnonzero(row >= 0.5)) for row in proba]
        return self.classes_[np.argmax(proba, axis=1)]

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit() first")


def is_multilabel(labels: Sequence[Any]) -> bool:
    """Labels given as lists/tuples/sets of class names (one row per text) mean a multilabel scheme."""
    return len(labels) > 0 and isinstance(labels[0], (list, tuple, set, frozenset))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False, default=_json_default), encoding="utf-8")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
