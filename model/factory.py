"""The one place that maps a family name to a classifier class."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import TextClassifier, read_json


def _families() -> dict[str, type[TextClassifier]]:
    from .rnn import RNNClassifier  # noqa: PLC0415 - light import; Keras itself loads on first fit/load

    return {"rnn": RNNClassifier}


FAMILIES = ("rnn",)


def make_classifier(family: str, **params: Any) -> TextClassifier:
    try:
        cls = _families()[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known: {sorted(FAMILIES)}") from None
    return cls(**params)


def load_classifier(folder: Path) -> TextClassifier:
    """Load a saved model version folder (its ``meta.json`` names the family)."""
    family = read_json(Path(folder) / "meta.json")["family"]
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r} in {folder}")
    return _families()[family].load(Path(folder))
