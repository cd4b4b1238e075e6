"""How a retrain round splits, chooses and gates: pure functions over predictions, no I/O.

* ``assign_folds``: the cross-fitting folds over every current label. Each family is trained K times on K-1 folds
  and predicts the fold it did not see: those out-of-fold (OOF) predictions score it, calibrate it and compare it,
  and the model that serves is trained on every label (scikit-learn's ``refit=True`` practice).
* ``choose``: the round's candidate, by the cross-validated score over all labels (the same folds for every
  family, so the comparison is paired).
* ``single_class``: a model that predicts one class while every class has labels is broken, never promoted.
* ``gate``: the candidate replaces the champion unless there is evidence it is worse: on the labels the champion
  never saw, a paired sign test (McNemar, exact) on the documents the two models disagree on, or a score there far
  below the champion's (scores on different label sets are never compared). Without such evidence the model trained on more labels wins.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

DEGENERATE_MIN = 5  # a class with this many labels must be predictable: a model that never predicts it is broken


@dataclass
class Candidate:
    """One model of a retrain round.

    family: its family (or ``ensemble``); model: fitted on every label of the round, calibrated; mode: full or
    warm; seconds: training time (all folds and the final fit); oof: calibrated out-of-fold probabilities, rows in
    the round's label order; metrics: scores of the OOF predictions (``dataset: cross-validation``); members: an
    ensemble's member families; history: loss curves (of the first fold, which has held-out data).
    """

    family: str
    model: Any
    mode: str
    seconds: float
    oof: np.ndarray
    metrics: dict[str, Any]
    members: tuple[str, ...] = ()
    history: dict[str, Any] = field(default_factory=dict)

    def score(self, key: str) -> float:
        return float(self.metrics.get(key) or 0.0)


@dataclass(frozen=True)
class Decision:
    status: str  # champion | rejected
    reason: str


def _hash(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16)


def assign_folds(keys: Sequence[str], labels: Sequence[Any], k: int) -> np.ndarray:
    """Fold number (0..k-1) per row. Single-label: stratified, each class's documents dealt round-robin in the
    order of a hash of their key, so every fold sees every class with 2+ labels and the folds do not depend on
    the order labels arrived in. Multilabel: by the hash alone (``align`` gives a label a fold never saw 0)."""
    keys = list(keys)
    folds = np.zeros(len(keys), dtype=int)
    if k < 2 or not keys:
        return folds
    if labels and isinstance(labels[0], tuple):
        return np.array([_hash(key) % k for key in keys], dtype=int)
    by_class: dict[str, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(str(y), []).append(i)
    offset = 0
    for c in sorted(by_class):
        rows = sorted(by_class[c], key=lambda i: (_hash(keys[i]), keys[i]))
        for j, i in enumerate(rows):
            folds[i] = (offset + j) % k
        offset += len(rows)  # the next class starts where this one stopped: folds stay the same size
    return folds


def fold_count(labels: Sequence[Any], wanted: int) -> int:
    """How many folds the labels allow: ``wanted``, fewer when there are very few labels (each fold's training part
    keeps 2+ classes), at least 2."""
    return max(2, min(wanted, len(labels) // 2))


def align(proba: np.ndarray, have: Sequence[str], want: Sequence[str]) -> np.ndarray:
    """Probabilities whose columns follow ``have`` (a fold model's classes) re-ordered to ``want`` (the round's);
    a class the fold model never saw gets 0."""
    have, want = [str(c) for c in have], [str(c) for c in want]
    if have == want:
        return np.asarray(proba, dtype="float64")
    out = np.zeros((len(proba), len(want)))
    index = {c: j for j, c in enumerate(have)}
    for j, c in enumerate(want):
        if c in index:
            out[:, j] = proba[:, index[c]]
    return out


def choose(scores: Sequence[float | None], margin: float) -> int:
    """The index of the first score within ``margin`` of the best (None counts as 0): candidates are listed in order
    of preference (MODEL_FAMILIES, then the ensemble)."""
    values = [s or 0.0 for s in scores]
    top = max(values)
    return next(i for i, v in enumerate(values) if v >= top - margin)


def single_class(predicted: Sequence[Any], labels: Sequence[Any], minimum: int = DEGENERATE_MIN) -> str | None:
    """The one class a single-label model predicts for every document, when every class has at least ``minimum``
    labels (then it has data for the others and is broken); None otherwise, and for multilabel labels."""
    if not len(predicted) or (labels and isinstance(labels[0], tuple)):
        return None
    counts: dict[str, int] = {}
    for y in labels:
        counts[str(y)] = counts.get(str(y), 0) + 1
    seen = {str(p) for p in predicted}
    if len(seen) == 1 and len(counts) >= 2 and min(counts.values()) >= minimum:
        return seen.pop()
    return None


def sign_test(wins: int, losses: int) -> float:
    """One-sided exact p-value of McNemar's test: the chance of ``losses`` or more out of ``wins + losses``
    discordant documents going the champion's way if both models were equally good."""
    n = wins + losses
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, i) for i in range(losses, n + 1)) / 2 ** n)


def gate(*, key: str, candidate_new: float | None, champion_new: float | None, champion_version: int,
         candidate_right: Sequence[bool], champion_right: Sequence[bool], alpha: float, max_drop: float,
         more_labels: int) -> Decision:
    """Whether the round's candidate replaces the champion.

    ``candidate_right`` / ``champion_right``: per document labelled since the champion was trained (neither model
    trained on it: the candidate's answer is out-of-fold), whether each model got it right; ``candidate_new`` /
    ``champion_new``: their ``key`` scores on those same documents (None when too few to compare). Rejected when
    the champion wins significantly more of the documents they disagree on (one-sided p < ``alpha``), or scores
    more than ``max_drop`` above the candidate there (a broken fit). Scores on different label sets are never
    compared: under active learning the later labels are harder, so a better model scores lower on them. Otherwise
    promoted: a model trained on ``more_labels`` more labels is, in expectation, at least as good."""
    wins = sum(c and not h for c, h in zip(candidate_right, champion_right))
    losses = sum(h and not c for c, h in zip(candidate_right, champion_right))
    n = len(candidate_right)
    p = sign_test(wins, losses)
    paired = (f"on the {n} labels v{champion_version} never saw, the candidate was right where it was wrong "
              f"{wins} times and wrong where it was right {losses} times (sign test p={p:.3f})")
    if candidate_new is not None and champion_new is not None and candidate_new < champion_new - max_drop:
        return Decision("rejected", f"{key} {candidate_new:.4f} on the {n} labels v{champion_version} never saw is "
                                    f"more than {max_drop} under its {champion_new:.4f}: a broken fit; {paired}")
    if losses > wins and p < alpha:
        return Decision("rejected", f"the champion v{champion_version} is better: {paired} < {alpha}")
    return Decision("champion", f"trained on {more_labels} more labels and no evidence it is worse: {paired}"
                    if more_labels > 0 else f"no evidence it is worse: {paired}")


__all__ = ["Candidate", "Decision", "align", "assign_folds", "choose", "fold_count", "gate",
           "sign_test", "single_class"]
