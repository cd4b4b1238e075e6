"""The quick family: TF-IDF word 1-2 grams + character 2-5 grams, and a linear model with calibrated probabilities.

Trains in about a second on 5,000 texts and scores ~10,000 texts/s on 2 cores; on SMS spam it is the strongest
single model measured (spam F1 0.976, shared/docs/bert-notes.md). Why it is built this way:

* Character n-grams (``char_wb``) catch spelling variants, numbers and symbols (``£1000``, ``txt``) that word
  tokens miss; word bigrams catch short phrases. ``sublinear_tf`` keeps a long text from dominating.
* LinearSVC separates best but gives no probabilities: ``CalibratedClassifierCV`` (sigmoid, internal folds) adds
  them, which uncertainty sampling and pre-label scores need. With fewer than ``min_calibration`` examples in a
  class there is nothing to calibrate on: logistic regression (probabilities by construction) is used instead,
  and ``estimator_`` records which.
* Multilabel: one calibrated binary model per label (one-vs-rest); a label seen in no or every text gets a
  constant probability.
* One fit of the features per round (``shared_features``): quick and hybrid use the same word + character TF-IDF,
  and a retrain round fits each family on the same folds, so inside ``with shared_features():`` a vectoriser
  fitted on a set of texts is kept and reused by the next family asking for the same texts and parameters
  (identical features: the fit is deterministic), up to SHARED_FEATURES_BYTES of matrices.
"""
from __future__ import annotations

import contextvars
import hashlib
import inspect
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .base import TextClassifier, read_json, write_json

logger = logging.getLogger(__name__)
MODEL_FILE = "model.joblib"
PARAMS_FILE = "quick.json"
# what one round may keep of fitted TF-IDF matrices for reuse (beyond it, each family fits its own again)
SHARED_FEATURES_BYTES = 256 * 2**20
_SHARED: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar("prelabel_tfidf", default=None)


@contextmanager
def shared_features() -> Iterator[dict[Any, Any]]:
    """Within the block, a word + character TF-IDF fitted on a set of texts is fitted once and shared by every
    family that asks for the same texts and parameters (a retrain round: quick and hybrid on the same folds).
    Yields the memo; its ``hits`` count says how many fits were saved."""
    memo: dict[Any, Any] = {"bytes": 0, "hits": 0}
    token = _SHARED.set(memo)
    try:
        yield memo
    finally:
        _SHARED.reset(token)


def _texts_key(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


class _Constant:
    """A binary "model" for a label that every (or no) training text has."""

    def __init__(self, p: float) -> None:
        self.p = p

    def predict_proba(self, x: Any) -> np.ndarray:
        return np.tile([1.0 - self.p, self.p], (x.shape[0], 1))


class QuickClassifier(TextClassifier):
    """TF-IDF (word + char n-grams) + calibrated linear SVM; binary, multiclass and multilabel.

    Parameters
    ----------
    word_ngrams, char_ngrams : n-gram ranges of the word and character (``char_wb``) vectorisers.
    min_df : minimum document frequency of a feature.
    max_features : cap per vectoriser (memory on large corpora).
    C : inverse regularisation strength of the linear model.
    class_weight : ``"balanced"`` (default) weights each class by the inverse of its frequency, so a rare class
        (spam, an uncommon topic) is not traded away for accuracy on the common one; ``None`` weights all equally.
    min_calibration : fewest examples per class for a calibrated SVM; below it, logistic regression.
    random_state : seed of the calibration folds.
    """

    family = "quick"

    def __init__(self, *, word_ngrams: tuple[int, int] = (1, 2), char_ngrams: tuple[int, int] = (2, 5),
                 min_df: int = 1, max_features: int = 300_000, C: float = 1.0,
                 class_weight: str | None = "balanced", min_calibration: int = 3,
                 random_state: int | None = 42) -> None:
        self.word_ngrams = tuple(word_ngrams)
        self.char_ngrams = tuple(char_ngrams)
        self.min_df = min_df
        self.max_features = max_features
        self.C = C
        self.class_weight = class_weight
        self.min_calibration = min_calibration
        self.random_state = random_state

    def _vectorizer(self, parts: tuple[str, ...] = ("word", "char")) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415
        from sklearn.pipeline import FeatureUnion  # noqa: PLC0415

        made = {
            "word": TfidfVectorizer(ngram_range=self.word_ngrams, min_df=self.min_df, sublinear_tf=True,
                                    max_features=self.max_features, dtype=np.float32),
            "char": TfidfVectorizer(analyzer="char_wb", ngram_range=self.char_ngrams, min_df=self.min_df,
                                    sublinear_tf=True, max_features=self.max_features, dtype=np.float32),
        }
        return FeatureUnion([(p, made[p]) for p in parts])

    def _features(self, texts: list[str]) -> Any:
        """Fit the vectoriser; when one analyser finds nothing (texts of one-letter words or only symbols have
        no word tokens), the other alone, with the reason noted in ``estimator_``. Inside ``shared_features``, a
        fit made for the same texts and parameters is reused."""
        memo = _SHARED.get()
        if memo is None:
            return self._fit_features(texts)
        key = (self.word_ngrams, self.char_ngrams, self.min_df, self.max_features, _texts_key(texts))
        if key in memo:
            memo["hits"] += 1
            self.vectorizer_, x, self.features_note_ = memo[key]
            return x
        x = self._fit_features(texts)
        size = x.data.nbytes + x.indices.nbytes + x.indptr.nbytes
        if memo["bytes"] + size <= SHARED_FEATURES_BYTES:
            memo[key] = (self.vectorizer_, x, self.features_note_)
            memo["bytes"] += size
        return x

    def _fit_features(self, texts: list[str]) -> Any:
        for parts in (("word", "char"), ("char",), ("word",)):
            try:
                self.vectorizer_ = self._vectorizer(parts)
                x = self.vectorizer_.fit_transform(texts)
            except ValueError:  # sklearn: "empty vocabulary"
                continue
            self.features_note_ = "" if len(parts) == 2 else f"{parts[0]} n-grams only (the other found nothing)"
            return x
        raise ValueError("the texts have no words or characters to learn from")

    def _transform(self, texts: list[str]) -> Any:
        """Features of texts for the fitted model (``_features`` fits them)."""
        return self.vectorizer_.transform(texts)

    def _linear(self, y: np.ndarray) -> tuple[Any, str]:
        """A calibrated SVM when every class has enough examples to calibrate on, else logistic regression."""
        from sklearn.calibration import CalibratedClassifierCV  # noqa: PLC0415
        from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
        from sklearn.svm import LinearSVC  # noqa: PLC0415

        smallest = int(np.min(np.unique(y, return_counts=True)[1]))
        if smallest >= self.min_calibration:
            cv = min(5, smallest)
            return CalibratedClassifierCV(LinearSVC(C=self.C, class_weight=self.class_weight,
                                                    random_state=self.random_state), method="sigmoid",
                                          cv=cv), f"linear_svc+sigmoid calibration ({cv} folds)"
        return (LogisticRegression(C=max(self.C, 1.0) * 10, class_weight=self.class_weight, max_iter=2000,
                                   random_state=self.random_state),
                f"logistic_regression (a class has {smallest} example(s): too few to calibrate an SVM)")

    def fit(self, texts: Sequence[str], labels: Sequence[Any], *,
            validation: tuple[Sequence[str], Sequence[Any]] | None = None) -> "QuickClassifier":
        """Fit from scratch. ``validation`` is accepted for the common interface; a linear model has no epochs
        to monitor."""
        self._set_classes(texts, labels)
        classes = self.classes_
        x = self._features([str(t) for t in texts])
        if self.multilabel_:
            self.models_, notes = [], []
            for c in classes:
                y = np.array([c in {str(v) for v in row} for row in labels], dtype=int)
                if y.min() == y.max():
                    self.models_.append(_Constant(float(y[0])))
                    notes.append(f"{c}: constant")
                    continue
                m, note = self._linear(y)
                self.models_.append(m.fit(x, y))
                notes.append(f"{c}: {note}")
            self.estimator_ = "; ".join(notes)
        else:
            y = np.array([str(v) for v in labels])
            m, self.estimator_ = self._linear(y)
            self.model_ = m.fit(x, y)
        if self.features_note_:
            self.estimator_ = f"{self.estimator_}; {self.features_note_}"
        self.history_: dict[str, list[float]] = {}
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        if len(texts) == 0:
            return np.zeros((0, len(self.classes_)))
        x = self._transform([str(t) for t in texts])
        if self.multilabel_:
            return np.column_stack([m.predict_proba(x)[:, 1] for m in self.models_]).astype("float64")
        p = self.model_.predict_proba(x)
        order = [list(self.model_.classes_).index(c) for c in self.classes_]  # columns follow classes_
        return p[:, order].astype("float64")

    def save(self, folder: Path) -> None:
        import joblib  # noqa: PLC0415

        self._check_fitted()
        folder = Path(folder)
        state = {"vectorizer": self.vectorizer_, "model": getattr(self, "model_", None),
                 "models": getattr(self, "models_", None)}
        joblib.dump(state, folder / MODEL_FILE, compress=3)
        write_json(folder / PARAMS_FILE, {"params": self.get_params(), "classes": list(self.classes_),
                                          "multilabel": bool(self.multilabel_), "estimator": self.estimator_})

    @classmethod
    def load(cls, folder: Path) -> "QuickClassifier":
        import joblib  # noqa: PLC0415

        folder = Path(folder)
        meta = read_json(folder / PARAMS_FILE)
        params = dict(meta["params"])
        params["word_ngrams"], params["char_ngrams"] = tuple(params["word_ngrams"]), tuple(params["char_ngrams"])
        params = {k: v for k, v in params.items() if k in inspect.signature(cls.__init__).parameters}
        clf = cls(**params)
        state = joblib.load(folder / MODEL_FILE)  # only prelabel's own version folders are ever loaded
        clf.classes_ = np.array(meta["classes"])
        clf.multilabel_ = bool(meta["multilabel"])
        clf.estimator_ = meta.get("estimator", "")
        clf.vectorizer_ = state["vectorizer"]
        if clf.multilabel_:
            clf.models_ = state["models"]
        else:
            clf.model_ = state["model"]
        clf.history_ = {}
        return clf


__all__ = ["QuickClassifier"]
