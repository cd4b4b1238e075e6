"""When to stop annotating: stabilising predictions (Bloodgood & Vijay-Shanker, CoNLL 2009).

At every **step** (the first round whose labels reached STOP_GROWTH times the last step's, so steps are batches
of labels as in the paper, not retrains a label apart, whose models always agree), the round's chosen model
predicts a fixed **stop set**: up to STOP_SET documents of the project, the same ones every time (the smallest
hashes of their ids). Cohen's kappa between its decisions and the last step's model's says how much the model still
moves. Once kappa has stayed at or above STOP_KAPPA for STOP_ROUNDS steps in a row, with at least STOP_MIN_LABELS
labels, more labels are unlikely to change the model: the signal says so (it never stops anything itself). A
rejected candidate counts like any other model: the question is whether training on more labels still changes what
is learnt, not which model serves.

Pure Python (no numpy), so the web process can read the signal without loading a model.
"""
from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping, Sequence

HISTORY = 20  # rounds kept on the project row


def is_step(history: Sequence[Mapping[str, Any]], labels: int, growth: float) -> bool:
    """Whether a model trained on ``labels`` is the next step after ``history`` (the steps recorded so far): the
    first one, or ``growth`` times the last step's labels."""
    if not history:
        return True
    return labels >= growth * float(history[-1].get("labels") or 0)


def stop_set(keys: Iterable[str], size: int) -> list[str]:
    """The ``size`` document keys with the smallest SHA-256: a fixed sample, the same every round (a document added
    later joins only if its hash is among the smallest)."""
    return sorted(keys, key=lambda k: hashlib.sha256(k.encode("utf-8")).hexdigest())[:size]


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """Cohen's kappa between two models' decisions on the same documents (1.0 when both give every document the
    same single class); None with no documents."""
    n = len(a)
    if n == 0:
        return None
    a, b = [str(x) for x in a], [str(x) for x in b]
    agree = sum(x == y for x, y in zip(a, b)) / n
    chance = sum((a.count(c) / n) * (b.count(c) / n) for c in set(a) | set(b))
    if chance >= 1.0:
        return 1.0 if agree == 1.0 else 0.0
    return (agree - chance) / (1.0 - chance)


def compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[float | None, float | None, int]:
    """(kappa, share changed, documents compared) between two models' decisions on the stop set, over the
    documents both decided (None, None, 0 when none: a first model)."""
    common = sorted(before.keys() & after.keys())
    if not common:
        return None, None, 0
    a, b = [before[k] for k in common], [after[k] for k in common]
    return cohen_kappa(a, b), sum(x != y for x, y in zip(a, b)) / len(common), len(common)


def stop_signal(history: Sequence[Mapping[str, Any]], rounds: int, kappa: float,
                min_labels: int) -> dict[str, Any]:
    """``{"suggested", "recent", "rounds", "kappa", "min_labels", "labels", "reason"}`` from the rounds' records
    (``kappa`` and ``labels`` each)."""
    recent = [h.get("kappa") for h in history[-rounds:]] if rounds > 0 else []
    measured = [k for k in recent if k is not None]
    labels = history[-1].get("labels") if history else None
    steady = len(recent) == rounds and len(measured) == rounds and all(k >= kappa for k in measured)
    suggested = steady and (labels or 0) >= min_labels
    if suggested:
        reason = (f"Cohen's kappa between successive models on the stop set stayed at or above {kappa} for the last "
                  f"{rounds} steps: more labels are unlikely to change the model")
    elif steady:
        reason = f"the model has stopped changing, but {labels} labels are under STOP_MIN_LABELS {min_labels}"
    elif len(measured) < rounds:
        reason = f"{len(measured)} of {rounds} steps measured so far"
    else:
        reason = f"kappa between successive models was down to {min(measured):.3f} in the last {rounds} steps " \
                 f"(stop at {kappa} or above)"
    return {"suggested": suggested, "recent": [None if k is None else round(k, 4) for k in recent],
            "rounds": rounds, "kappa": kappa, "min_labels": min_labels, "labels": labels, "reason": reason}
