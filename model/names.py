"""Names that settings and the web API validate against, without importing numpy or Keras."""

STRATEGIES = ("random", "deterministic", "least_confidence", "entropy", "margin", "maxprob")
UNCERTAINTY = ("least_confidence", "entropy", "margin")


def class_name(value: object) -> str:
    """A platform label value -> the class name models use (``true`` for a boolean, ``sport`` for an enum)."""
    import json  # noqa: PLC0415

    return value if isinstance(value, str) else json.dumps(value)
