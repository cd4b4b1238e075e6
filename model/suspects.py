"""Labels most likely wrong: where a confident model, that never trained on a document, disagrees with its label.

Confident learning (Northcutt, Jiang & Chuang, JAIR 2021), as the well-kept ``cleanlab`` implements it: from
out-of-fold probabilities over every label, each class's threshold is the model's mean confidence on the documents
labelled that class; a document is an issue when the model is above another class's threshold and not its own
(``filter_by="prune_by_noise_rate"``), and the issues are ranked by the label's self-confidence, the lowest first.
The probabilities are the round's calibrated out-of-fold ones (worker/loop/training.py), so no document is judged by
a model trained on it. Pure: arrays in, ranked rows out. ``n_jobs=1``: cleanlab's default forks a process pool,
which deadlocks in a worker whose other threads (TensorFlow's, Huey's) hold locks at the fork (seen: a round
that never ended).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MIN_PER_CLASS = 5  # below this, a class's threshold is a guess: no list until every class has it
FILTER = "prune_by_noise_rate"  # cleanlab's default: as many issues per class pair as the confident joint counts


@dataclass(frozen=True)
class Suspect:
    row: int  # in the labels given
    given: Any  # the label (a class, or a tuple of classes for multilabel)
    predicted: Any  # what the model says instead
    probability: float  # the model's calibrated probability of ``predicted``
    quality: float  # the label's self-confidence (lower: more likely wrong)


def find(proba: np.ndarray, labels: Sequence[Any], classes: Sequence[str], *, multilabel: bool = False,
         thresholds: Sequence[float] | None = None, filter_by: str = FILTER) -> list[Suspect]:
    """The labels confident learning finds likely wrong, most likely first. ``proba``: out-of-fold probabilities,
    columns in ``classes`` order; ``labels``: a class per row (multilabel: a tuple of classes);
    ``thresholds``: a multilabel model's cut-offs (default 0.5)."""
    from cleanlab.filter import find_label_issues  # noqa: PLC0415 - the worker only
    from cleanlab.multilabel_classification.filter import find_label_issues as find_multilabel  # noqa: PLC0415
    from cleanlab.rank import get_label_quality_scores  # noqa: PLC0415

    classes = [str(c) for c in classes]
    proba = np.asarray(proba, dtype=float)
    if not len(labels) or proba.shape != (len(labels), len(classes)) or len(classes) < 2:
        return []
    index = {c: j for j, c in enumerate(classes)}
    if multilabel:
        given = [[index[str(c)] for c in row if str(c) in index] for row in labels]
        counts = np.bincount([j for row in given for j in row], minlength=len(classes))
        if counts.min() < MIN_PER_CLASS or (len(labels) - counts).min() < MIN_PER_CLASS:
            return []
        issues = find_multilabel(labels=given, pred_probs=np.clip(proba, 1e-6, 1 - 1e-6),
                                 return_indices_ranked_by="self_confidence", n_jobs=1)
        cut = np.asarray(thresholds if thresholds is not None else [0.5] * len(classes), dtype=float)
        out = []
        for i in issues:
            said = tuple(classes[j] for j in given[i])
            decided = tuple(c for j, c in enumerate(classes) if proba[i, j] >= cut[j])
            sure = [max(p, 1 - p) for p in proba[i]]
            quality = float(np.mean([proba[i, j] if j in given[i] else 1 - proba[i, j] for j in range(len(classes))]))
            out.append(Suspect(int(i), said, decided, float(np.mean(sure)), quality))
        return out
    y = np.array([index.get(str(v), -1) for v in labels])
    keep = y >= 0
    if not keep.all():  # a label of a class the model does not have: not judged
        rows = np.flatnonzero(keep)
        return [Suspect(int(rows[s.row]), s.given, s.predicted, s.probability, s.quality)
                for s in find(proba[keep], [labels[i] for i in rows], classes, filter_by=filter_by)]
    counts = np.bincount(y, minlength=len(classes))
    if counts.min() < MIN_PER_CLASS:
        return []
    norm = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)
    issues = find_label_issues(labels=y, pred_probs=norm, filter_by=filter_by,
                               return_indices_ranked_by="self_confidence", n_jobs=1)
    quality = get_label_quality_scores(y, norm, method="self_confidence")
    return [Suspect(int(i), classes[y[i]], classes[int(norm[i].argmax())], float(norm[i].max()), float(quality[i]))
            for i in issues]


__all__ = ["MIN_PER_CLASS", "Suspect", "find"]
