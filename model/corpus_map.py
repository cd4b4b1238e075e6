"""A map of the corpus: documents placed in two dimensions by their sentence embeddings (t-SNE, scikit-learn), so
that documents with similar meaning sit together, and a label far from its neighbours' stands out (ActiveTigger's
Visualization). Pure: vectors in, coordinates in [0, 1] out.
"""
from __future__ import annotations

import numpy as np

MAX_POINTS = 5000  # a map a browser draws at once, and t-SNE computes in about a minute on 2 cores


def sample(n_labelled: int, n_pool: int, limit: int = MAX_POINTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Which labelled documents and which pool documents go on the map (indices into each): every labelled one
    up to ``limit``, and a uniform sample of the pool for the rest."""
    rng = np.random.default_rng(seed)
    lab = np.arange(n_labelled) if n_labelled <= limit else np.sort(rng.choice(n_labelled, limit, replace=False))
    room = max(0, limit - len(lab))
    pool = np.arange(n_pool) if n_pool <= room else np.sort(rng.choice(n_pool, room, replace=False))
    return lab, pool


def project(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D coordinates in [0, 1] x [0, 1] for ``vectors`` (rows), by t-SNE on cosine distance (the embeddings are
    unit vectors); fewer than 3 rows are placed on a line."""
    from sklearn.manifold import TSNE  # noqa: PLC0415 - the worker only

    vectors = np.asarray(vectors, dtype="float32")
    n = len(vectors)
    if n < 3:
        return np.column_stack([np.linspace(0.1, 0.9, n), np.full(n, 0.5)]) if n else np.zeros((0, 2))
    xy = TSNE(n_components=2, perplexity=float(min(30.0, (n - 1) / 3)), init="pca", metric="cosine",
              random_state=seed).fit_transform(vectors)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return (xy - lo) / np.where(hi > lo, hi - lo, 1.0)


__all__ = ["MAX_POINTS", "project", "sample"]
