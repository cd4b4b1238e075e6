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
    def fit(self, texts: Sequence[str], labels: Sequence[str], *,
            validation: tuple[Sequence[str], Sequence[Any]] | None = None) -> "TextClassifier": ...

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

    def refit(self, texts: Sequence[str], labels: Sequence[Any], epochs: int = 1, *, lr_factor: float = 0.1,
              validation: tuple[Sequence[str], Sequence[Any]] | None = None) -> "TextClassifier":
        """Train further on all of ``texts`` (a warm start). This default is a full fit: right for the families
        whose fit is cheap (quick ~1 s, embed and hybrid with cached embeddings) or must start from the pretrained
        checkpoint (bert); the RNN overrides it with a real warm start."""
        return self.fit(texts, labels, validation=validation)

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def predict(self, texts: Sequence[str]) -> Any:
        """Class names; for a multilabel model, a tuple per text of the labels at or above their threshold."""
        return self.decide(self.predict_proba(texts))

    def decide(self, proba: np.ndarray) -> Any:
        """``predict`` from probabilities already computed: the most probable class, or for a multilabel model
        the labels whose probability reaches ``thresholds()``."""
        if getattr(self, "multilabel_", False):
            th = self.thresholds()
            return [tuple(self.classes_[j] for j in np.flatnonzero(row >= th)) for row in proba]
        return self.classes_[np.argmax(proba, axis=1)] if len(proba) else np.array([], dtype=self.classes_.dtype)

    def thresholds(self) -> np.ndarray:
        """Per-label decision thresholds of a multilabel model: 0.5 unless ``tune_thresholds`` set them."""
        t = getattr(self, "thresholds_", None)
        return np.asarray(t, dtype="float64") if t is not None else np.full(len(self.classes_), 0.5)

    def tune_thresholds(self, texts: Sequence[str], labels: Sequence[Any], proba: np.ndarray | None = None) -> None:
        """Multilabel only: per label, the threshold in 0.05..0.95 with the best F1 on ``(texts, labels)`` (held-out
        data, e.g. the validation split). Why: a rare label's probability seldom reaches 0.5 (measured: fine-tuned
        MiniLM predicted no GoEmotions label at 0.5), so one fixed cut-off predicts nothing for it. A label absent
        from the data keeps 0.5; ties go to the threshold nearest 0.5. ``proba``: the texts' probabilities when
        already computed."""
        if not getattr(self, "multilabel_", False) or len(texts) == 0:
            return
        proba = self.predict_proba(texts) if proba is None else proba
        grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
        order = grid[np.argsort(np.abs(grid - 0.5), kind="stable")]  # nearest 0.5 first: wins ties
        th = np.full(len(self.classes_), 0.5)
        for j, c in enumerate(self.classes_):
            y = np.array([c in {str(v) for v in row} for row in labels])
            if not y.any():
                continue
            f1 = [2 * np.sum(y & (proba[:, j] >= t)) / max(1, np.sum(y) + np.sum(proba[:, j] >= t)) for t in order]
            th[j] = order[int(np.argmax(f1))]
        self.thresholds_ = th

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
