"""Names that settings and the web API validate against, without importing numpy or Keras."""

STRATEGIES = ("random", "deterministic", "least_confidence", "entropy", "margin", "maxprob")
UNCERTAINTY = ("least_confidence", "entropy", "margin")
