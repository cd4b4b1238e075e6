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

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(texts), axis=1)]

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit() first")


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
