"""Fitting a round's candidates by cross-fitting (model/selection.py): each family K times on K-1 folds for its
out-of-fold probabilities, then once on every label (the model that serves), calibrated on those probabilities
(model/calibration.py); the ensemble of the round's candidates likewise; and their scores.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from model.names import classes_of
from model.selection import Candidate

if TYPE_CHECKING:
    from . import Loop


class Fitting:
    def __init__(self, loop: "Loop") -> None:
        self.loop = loop

    @staticmethod
    def scores(model: Any, ids: Sequence[str], y: Sequence[Any], proba: np.ndarray | None, dataset: str,
               texts: Sequence[str] | None = None) -> dict[str, Any]:
        """The scores of ``model``'s probabilities ``proba`` (or of its predictions on ``texts``) against ``y``."""
        from model.evaluate import evaluate, evaluate_multilabel, positive_class  # noqa: PLC0415

        if proba is None:
            proba = model.predict_proba(list(texts or []))
        pred = model.decide(proba) if len(y) else []
        if getattr(model, "multilabel_", False):
            return evaluate_multilabel(y, pred, model.classes_, proba=proba, ids=ids, dataset=dataset)
        return evaluate(y, pred, model.classes_, positive_class(model.classes_), proba=proba, ids=ids,
                        dataset=dataset)

    def cross_fit(self, family: str, texts: list[str], ys: list[Any], folds: np.ndarray,
                   score: Callable[[Any, np.ndarray], dict[str, Any]], warm_from: int | None,
                   weights: np.ndarray | None = None) -> Candidate:
        """A candidate of ``family``: K fits on K-1 folds give every label an out-of-fold probability; one fit on
        every label (warm from the champion when ``warm_from``) is the model that serves; a calibrator fitted on
        the out-of-fold probabilities (``weights`` per label: model/estimate.corpus_weights) makes its scores
        probabilities; multilabel cut-offs are tuned on them too."""
        from model import calibration  # noqa: PLC0415
        from model.selection import align  # noqa: PLC0415

        t0 = time.perf_counter()
        classes = classes_of(ys)
        oof = np.zeros((len(ys), len(classes)))
        history: dict[str, Any] = {}
        for f in sorted(set(folds.tolist())):
            inside = np.flatnonzero(folds != f)
            out = np.flatnonzero(folds == f)
            y_in = [ys[i] for i in inside]
            if len(classes_of(y_in)) < 2:
                raise ValueError(f"cross-validation fold {f + 1} leaves one class to train on")
            x_out, y_out = [texts[i] for i in out], [ys[i] for i in out]
            m = self.new_model(family).fit([texts[i] for i in inside], y_in, validation=(x_out, y_out))
            oof[out] = align(m.predict_proba(x_out), m.classes_, classes)
            if not history:
                history = dict(getattr(m, "history_", {}) or {})
        served, mode = self.fit_family(family, texts, ys, warm_from)
        multilabel = bool(getattr(served, "multilabel_", False))
        cal = calibration.fit(oof, ys, served.classes_, multilabel, weights)
        model = calibration.CalibratedClassifier(served, cal)
        oof = calibration.apply(cal, oof)
        model.tune_thresholds(texts, ys, proba=oof)  # multilabel only
        return Candidate(family, model, mode, time.perf_counter() - t0, oof, score(model, oof),
                         history=history or dict(getattr(served, "history_", {}) or {}))

    def ensemble(self, candidates: list[Candidate], texts: list[str], ys: list[Any],
                  score: Callable[[Any, np.ndarray], dict[str, Any]], key: str,
                  weights: np.ndarray | None = None) -> tuple[Candidate | None, str]:
        """The round's best ensemble (mean probabilities of 2+ candidates, the subset chosen on their out-of-fold
        probabilities), calibrated on its own out-of-fold mean (a mean of calibrated models is not calibrated), as
        one more candidate, only when it beats every single one; else None and a note of its score."""
        from model import calibration  # noqa: PLC0415
        from model.ensemble import best_ensemble  # noqa: PLC0415

        classes = [list(c.model.classes_) for c in candidates]
        if any(c != classes[0] for c in classes):
            return None, ""
        ens, subset, mean = best_ensemble([c.model for c in candidates], [c.oof for c in candidates], texts, ys,
                                          lambda m, p: score(m, p).get(key) or 0.0)
        cal = calibration.fit(mean, ys, ens.classes_, bool(getattr(ens, "multilabel_", False)), weights)
        model = calibration.CalibratedClassifier(ens, cal)
        oof = calibration.apply(cal, mean)
        model.tune_thresholds(texts, ys, proba=oof)
        metrics = score(model, oof)
        names = "+".join(candidates[i].family for i in subset)
        single = max(c.score(key) for c in candidates)
        if (metrics.get(key) or 0.0) <= single + self.loop.settings.selection_margin:
            return None, (f"ensemble {names} cross-validated {key} {metrics.get(key) or 0.0:.4f} is not above the "
                          f"best single model's {single:.4f} + SELECTION_MARGIN")
        return Candidate("ensemble", model, "full", sum(candidates[i].seconds for i in subset), oof, metrics,
                         members=tuple(candidates[i].family for i in subset)), ""

    def new_model(self, family: str) -> Any:
        from model.factory import make_classifier  # noqa: PLC0415

        cfg = self.loop.settings
        return make_classifier(family, epochs=cfg.model_epochs, cell=cfg.model_cell, random_state=cfg.model_seed,
                               checkpoint=cfg.bert_checkpoint, precision=cfg.encoder_dtype)

    def fit_family(self, family: str, x: list[str], y: list[Any], warm_from: int | None) -> tuple[Any, str]:
        """``family`` fitted on every label: warm (the champion's copy trained further) or full."""
        from model.calibration import uncalibrated  # noqa: PLC0415

        cfg = self.loop.settings
        if warm_from is not None:
            # never train the champion in place (the candidate may lose); its calibration is fitted again
            clf = uncalibrated(self.loop.load_copy(warm_from))
            if list(clf.classes_) == classes_of(y):
                clf = clf.refit(x, y, epochs=cfg.warm_epochs, lr_factor=cfg.warm_lr_factor) or clf
                return clf, "warm"
        return self.new_model(family).fit(x, y), "full"

