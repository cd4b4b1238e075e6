"""When to stop annotating: stabilising predictions (Bloodgood & Vijay-Shanker, CoNLL 2009).

After each retrain round the worker compares what the model in service predicts for the unlabelled pool with what
it predicted the round before, on the documents in both pools. Once that share of changed predictions has stayed
under STOP_CHANGED for STOP_ROUNDS rounds in a row, more labels are unlikely to change the model: the signal says
so (it never stops anything itself). A round whose candidate was not promoted changes nothing, and counts as 0.

Pure Python (no numpy), so the web process can read the signal without loading a model.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

HISTORY = 20  # rounds kept on the project row


def changed_share(before: Mapping[Any, Any], after: Mapping[Any, Any]) -> tuple[float | None, int]:
    """The share of documents present in both whose decision differs, and how many were compared (None, 0 when
    none: a first model, or a pool labelled out)."""
    common = before.keys() & after.keys()
    if not common:
        return None, 0
    return sum(before[k] != after[k] for k in common) / len(common), len(common)


def stop_signal(history: Sequence[Mapping[str, Any]], rounds: int, threshold: float) -> dict[str, Any]:
    """``{"suggested", "recent", "rounds", "threshold", "reason"}`` from the rounds' records (``changed`` each)."""
    recent = [h.get("changed") for h in history[-rounds:]] if rounds > 0 else []
    measured = [c for c in recent if c is not None]
    suggested = len(history) >= rounds and len(measured) == len(recent) and all(c < threshold for c in measured)
    if suggested:
        reason = (f"predictions on the pool changed for under {threshold:.1%} of documents in each of the last "
                  f"{rounds} rounds: more labels are unlikely to change the model")
    elif len(measured) < rounds:
        reason = f"{len(measured)} of {rounds} rounds measured so far"
    else:
        reason = f"the last {rounds} rounds changed up to {max(measured):.1%} of the pool's predictions " \
                 f"(stop under {threshold:.1%})"
    return {"suggested": suggested, "recent": [None if c is None else round(c, 4) for c in recent],
            "rounds": rounds, "threshold": threshold, "labels": history[-1].get("labels") if history else None,
            "reason": reason}
