"""Names that settings and the web API validate against, without importing numpy or Keras."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

STRATEGIES = ("random", "deterministic", "least_confidence", "entropy", "margin", "maxprob", "confident")
# what a pre-label batch is for (PRELABEL_MODE, worker/loop/prelabel.py): learn = the active-learning batch (what the
# model needs), review = the most confident suggestions first (what an annotator confirms fastest), mixed = half each
PRELABEL_MODES = ("learn", "review", "mixed")


# what mode_of answers, in the order the dashboard shows them
PICK_KINDS = ("learn", "review", "audit", "cold_start", "pool", "unknown")


def mode_of(tag: str | None) -> str:
    """The kind of pick a pre-label's strategy tag (``Upload.strategy``) records: ``review`` (chosen as a sure
    suggestion), ``audit`` (random, for the estimate), ``cold_start`` (random until every class has labels),
    ``learn`` (active learning, any strategy and batch), ``pool`` (a suggestion on a pool task no pick chose, where
    the platform queues the whole pool), ``unknown`` (uploads from before tags were kept)."""
    if not tag:
        return "unknown"
    if tag.startswith("review"):
        return "review"
    if tag.startswith("audit"):
        return "audit"
    if tag.startswith("cold_start"):
        return "cold_start"
    if tag == "pool":  # Label Studio: every pool task carries a suggestion; the annotator's queue chose this one
        return "pool"
    return "learn"
UNCERTAINTY = ("least_confidence", "entropy", "margin")
# strategies whose score of each pool document is stored when the pool is scored (Prediction.rank_<name>), so that
# next answers them with a top-n read through an index, not a pass over the pool
RANKED_STRATEGIES = ("margin", "least_confidence", "entropy", "confident")
# how a batch is formed from the strategy's scores (model/query.py): the n best; one per cluster of the best
# candidates (diverse); quotas by class that favour rare classes (balanced); auto = top for a single-label
# scheme, balanced for a multilabel one (what won on bench.learning_curves, README)
BATCH_MODES = ("auto", "top", "diverse", "balanced")
FAMILIES = ("quick", "rnn", "embed", "bert", "hybrid", "fewshot")  # model/factory.py maps each to its class
KERAS_FAMILIES = ("rnn", "embed", "bert", "hybrid", "fewshot")  # they import TensorFlow when they first train or load
CHECKPOINT_FAMILIES = ("embed", "bert", "hybrid", "fewshot")  # they read a BERT checkpoint (BERT_CHECKPOINT)
# minutes per fit on CPU: trained on their own queue (worker/jobs.py), never holding up a round of the others
SLOW_FAMILIES = ("bert", "fewshot")
ENSEMBLE = "ensemble"  # built from a round's candidates (model/ensemble.py); not listed in MODEL_FAMILIES


def class_counts(values: "Iterable[object]") -> dict[str, int]:
    """Labels per class, from decoded label values (a multilabel value, a list, counts once per label)."""
    counts: dict[str, int] = {}
    for v in values:
        for c in (v if isinstance(v, list) else [class_name(v)]):
            counts[c] = counts.get(c, 0) + 1
    return counts


def class_name(value: object) -> str:
    """A platform label value -> the class name models use (``true`` for a boolean, ``sport`` for an enum)."""
    import json  # noqa: PLC0415

    return value if isinstance(value, str) else json.dumps(value)


def classes_of(ys: Sequence[Any]) -> list[str]:
    """The sorted classes of label rows: names, or tuples of names (multilabel)."""
    out: set[str] = set()
    for y in ys:
        out.update(y if isinstance(y, tuple) else (y,))
    return sorted(out)


def class_value(name: str, label_type: str | None) -> Any:
    """Inverse of class_name, by the label's type."""
    import json  # noqa: PLC0415

    return json.loads(name) if label_type == "boolean" else name


def plain(values: Iterable[Any]) -> list[Any]:
    """Label values as plain Python (``'neutral'``, not ``np.str_('neutral')``), for messages people read."""
    return [v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else
            (str(v) if isinstance(v, str) else v) for v in values]
