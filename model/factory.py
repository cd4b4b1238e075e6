"""The one place that maps a family name to a classifier class."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from .base import TextClassifier, read_json
from .names import FAMILIES


def _families() -> dict[str, type[TextClassifier]]:
    from .bert import BertClassifier  # noqa: PLC0415 - keras-hub loads on first fit/load
    from .embed import EmbedClassifier  # noqa: PLC0415 - keras-hub loads on first fit/load
    from .ensemble import EnsembleClassifier  # noqa: PLC0415
    from .hybrid import HybridClassifier  # noqa: PLC0415 - keras-hub loads on first fit/load
    from .quick import QuickClassifier  # noqa: PLC0415 - scikit-learn loads on first fit/load
    from .rnn import RNNClassifier  # noqa: PLC0415 - light import; Keras itself loads on first fit/load

    return {"rnn": RNNClassifier, "quick": QuickClassifier, "embed": EmbedClassifier, "bert": BertClassifier,
            "hybrid": HybridClassifier, "ensemble": EnsembleClassifier}


def make_classifier(family: str, **params: Any) -> TextClassifier:
    """A new classifier of ``family``; ``params`` it does not take (e.g. ``cell`` for ``quick``) are ignored, so
    one set of settings can configure every family."""
    try:
        cls = _families()[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES + ('ensemble',))}") from None
    accepted = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):  # the ensemble hands them on to its members
        return cls(**params)
    return cls(**{k: v for k, v in params.items() if k in accepted})


def load_classifier(folder: Path) -> TextClassifier:
    """Load a saved model version folder (its ``meta.json`` names the family)."""
    meta = read_json(Path(folder) / "meta.json")
    family = meta["family"]
    if family not in _families():
        raise ValueError(f"unknown model family {family!r} in {folder}")
    clf = _families()[family].load(Path(folder))
    if meta.get("thresholds") is not None:
        clf.thresholds_ = np.asarray(meta["thresholds"], dtype="float64")
    return clf
