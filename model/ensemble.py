"""An ensemble: the mean of the probabilities of models of different families, trained on the same labels.

Why: the families err on different texts (TF-IDF n-grams vs word sequences vs sentence embeddings), so averaging
their calibrated probabilities removes errors that each makes alone (measured on SMS spam: quick 0.976 spam F1,
quick + embed 0.983). The worker's training round builds one from a retrain round's candidates and keeps it only when it beats
every single candidate on the validation split; it is never a family you list in ``MODEL_FAMILIES``.

Saved as one version folder with each member in ``members/<i>-<family>/`` (its own files and meta.json), so
loading needs nothing outside the folder.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from .base import TextClassifier, read_json, write_json
from .names import plain

logger = logging.getLogger(__name__)
PARAMS_FILE = "ensemble.json"
MEMBERS_DIR = "members"


class EnsembleClassifier(TextClassifier):
    """Mean of the members' ``predict_proba``; the members share ``classes_`` (and multilabel or not).

    Parameters
    ----------
    families : the member families, when the ensemble trains its members itself (``fit``; e.g. cross-validation
        of an ensemble champion). ``of(members)`` builds one from members already fitted.
    member_params : constructor settings passed to every member (each takes those it knows).
    """

    family = "ensemble"
    # How members are built and loaded: set by model.factory (the one place that maps a family name to a class),
    # so this module does not import the factory that imports it.
    make_member: ClassVar[Callable[..., TextClassifier] | None] = None
    load_member: ClassVar[Callable[[Path], TextClassifier] | None] = None

    def __init__(self, *, families: Sequence[str] = ("quick", "rnn"), **member_params: Any) -> None:
        self.families = tuple(families)
        self.member_params = member_params

    @classmethod
    def of(cls, members: Sequence[TextClassifier]) -> "EnsembleClassifier":
        """An ensemble of fitted members; they must agree on the classes."""
        if len(members) < 2:
            raise ValueError("an ensemble needs at least 2 members")
        first = members[0]
        for m in members[1:]:
            if list(m.classes_) != list(first.classes_) or bool(getattr(m, "multilabel_", False)) != bool(
                    getattr(first, "multilabel_", False)):
                raise ValueError(f"ensemble members disagree on the classes: {plain(first.classes_)} vs "
                                 f"{plain(m.classes_)}")
        ens = cls(families=[m.family for m in members])
        ens.members_ = list(members)
        ens.classes_ = np.array(first.classes_)
        ens.multilabel_ = bool(getattr(first, "multilabel_", False))
        ens.history_ = {}
        return ens

    def fit(self, texts: Sequence[str], labels: Sequence[Any], *,
            validation: tuple[Sequence[str], Sequence[Any]] | None = None) -> "EnsembleClassifier":
        make = type(self).make_member
        if make is None:
            raise RuntimeError("EnsembleClassifier.make_member is unset: build ensembles with model.factory")
        members = [make(f, **self.member_params).fit(texts, labels, validation=validation)
                   for f in self.families]
        fitted = self.of(members)
        self.members_, self.classes_, self.multilabel_, self.history_ = (fitted.members_, fitted.classes_,
                                                                         fitted.multilabel_, {})
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        if len(texts) == 0:
            return np.zeros((0, len(self.classes_)))
        return np.mean([m.predict_proba(texts) for m in self.members_], axis=0)

    def get_params(self) -> dict[str, Any]:
        return {"families": list(self.families), **self.member_params}

    def save(self, folder: Path) -> None:
        self._check_fitted()
        folder = Path(folder)
        names = []
        for i, m in enumerate(self.members_):
            sub = folder / MEMBERS_DIR / f"{i}-{m.family}"
            sub.mkdir(parents=True)
            m.save(sub)
            meta: dict[str, Any] = {"family": m.family, "params": m.get_params()}
            if getattr(m, "thresholds_", None) is not None:
                meta["thresholds"] = [float(t) for t in m.thresholds_]
            if getattr(m, "calibration_", None):
                meta["calibration"] = m.calibration_
            write_json(sub / "meta.json", meta)
            names.append(sub.name)
        write_json(folder / PARAMS_FILE, {"params": self.get_params(), "members": names,
                                          "classes": list(self.classes_), "multilabel": bool(self.multilabel_)})

    @classmethod
    def load(cls, folder: Path) -> "EnsembleClassifier":
        load = cls.load_member
        if load is None:
            raise RuntimeError("EnsembleClassifier.load_member is unset: load versions with model.factory")
        folder = Path(folder)
        meta = read_json(folder / PARAMS_FILE)
        ens = cls.of([load(folder / MEMBERS_DIR / name) for name in meta["members"]])
        ens.member_params = {k: v for k, v in meta["params"].items() if k != "families"}
        return ens


def best_subset(probas: Sequence[np.ndarray], score: Any, min_size: int = 2) -> tuple[tuple[int, ...], float]:
    """The subset of models (indices, at least ``min_size``) whose mean probability scores best by
    ``score(mean_proba, subset)``; ties go to the smaller, earlier subset. Every subset is tried: there are at most a few
    families, and scoring a mean on the validation split costs milliseconds."""
    from itertools import combinations  # noqa: PLC0415

    best: tuple[tuple[int, ...], float] = ((), float("-inf"))
    for size in range(min_size, len(probas) + 1):
        for subset in combinations(range(len(probas)), size):
            value = float(score(np.mean([probas[i] for i in subset], axis=0), subset))
            if value > best[1]:
                best = (subset, value)
    return best


def best_ensemble(members: Sequence[TextClassifier], val_proba: Sequence[np.ndarray], val_texts: Sequence[str],
                  val_labels: Sequence[Any], value: Any) -> tuple[EnsembleClassifier, tuple[int, ...], np.ndarray]:
    """The ensemble of ``members`` (subset chosen by ``best_subset``) that scores best by ``value(model, proba)``
    on the validation data, with multilabel thresholds tuned there; also the subset and its validation
    probabilities. ``val_proba``: each member's probabilities on ``val_texts``."""

    def build(subset: tuple[int, ...], proba: np.ndarray) -> EnsembleClassifier:
        ens = EnsembleClassifier.of([members[i] for i in subset])
        ens.tune_thresholds(val_texts, val_labels, proba=proba)  # multilabel only
        return ens

    subset, _ = best_subset(val_proba, lambda p, s: value(build(s, p), p))
    proba = np.mean([val_proba[i] for i in subset], axis=0)
    return build(subset, proba), subset, proba


__all__ = ["EnsembleClassifier", "best_ensemble", "best_subset"]
