"""The one place that maps a family name to a classifier class."""
from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .base import TextClassifier, read_json, write_json
from .ensemble import EnsembleClassifier
from .names import FAMILIES


def _families() -> dict[str, type[TextClassifier]]:
    from .bert import BertClassifier  # noqa: PLC0415 - keras-hub loads on first fit/load
    from .embed import EmbedClassifier  # noqa: PLC0415 - keras-hub loads on first fit/load
    from .fewshot import FewShotClassifier  # noqa: PLC0415 - keras-hub loads on first fit/load
    from .hybrid import HybridClassifier  # noqa: PLC0415 - keras-hub loads on first fit/load
    from .quick import QuickClassifier  # noqa: PLC0415 - scikit-learn loads on first fit/load
    from .rnn import RNNClassifier  # noqa: PLC0415 - light import; Keras itself loads on first fit/load

    return {"rnn": RNNClassifier, "quick": QuickClassifier, "embed": EmbedClassifier, "bert": BertClassifier,
            "hybrid": HybridClassifier, "fewshot": FewShotClassifier, "ensemble": EnsembleClassifier}


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
    if meta.get("calibration"):  # scores calibrated on the round's out-of-fold predictions (model/calibration.py)
        from .calibration import CalibratedClassifier  # noqa: PLC0415

        clf = CalibratedClassifier(clf, meta["calibration"])
    if meta.get("thresholds") is not None:
        clf.thresholds_ = np.asarray(meta["thresholds"], dtype="float64")
    return clf


def save_version(clf: Any, root: Path, name: str, meta: dict[str, Any]) -> Path:
    """Write a model version folder atomically: a temporary folder renamed into place, so a crash never leaves
    half a model. Holds model.h5, vocab.json (RNN) and meta.json."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        clf.save(tmp)
        if getattr(clf, "thresholds_", None) is not None:  # tuned multilabel cut-offs: load_classifier restores them
            meta = {**meta, "thresholds": [float(t) for t in clf.thresholds_]}
        if getattr(clf, "calibration_", None):  # ... and the calibrator
            meta = {**meta, "calibration": clf.calibration_}
        write_json(tmp / "meta.json", meta)
        if final.exists():  # a retried job that crashed after the rename: replace the orphan
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


# the ensemble builds and loads its members through this module (see EnsembleClassifier.make_member)
EnsembleClassifier.make_member = staticmethod(make_classifier)
EnsembleClassifier.load_member = staticmethod(load_classifier)
