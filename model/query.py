"""Active-learning query strategies: score documents with a fitted model's probabilities, never train it.

Single-label ``proba`` rows sum to 1 over classes. Multilabel rows hold one independent sigmoid per label; a
document's uncertainty is then the **mean over labels** of that label's binary uncertainty (so one very
uncertain label among many counts less than several moderately uncertain ones).

A batch of ``n`` is formed from the scores in one of ``BATCH_MODES``:

* ``top``: the ``n`` best scores. With large batches they are often near-duplicates (the same unclear template).
* ``diverse``: the ``DIVERSE_POOL * n`` best candidates (at most DIVERSE_MAX) are clustered into ``n`` groups (k-means on TF-IDF word
  n-grams reduced by SVD; the same features in the worker and the web process, whatever the model) and the best
  of each group is taken (Zhdanov 2019, "diverse mini-batch active learning").
* ``auto`` (the default): ``top`` for a single-label scheme, ``balanced`` for a multilabel one (what reached the
  full-data score with the fewest labels on bench.learning_curves; ``diverse`` leads below ~100 labels on AG News).
* ``balanced``: quotas per class inversely proportional to its labels so far (+1), so a rare class gets most of
  the batch; single-label: candidates are grouped by predicted class and each group is ranked by the strategy's
  score; multilabel: for each label, rarest first, the documents whose probability is closest to that label's
  threshold, so the batch does not collapse onto the frequent labels (whose uncertainty dominates the mean).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .names import BATCH_MODES, STRATEGIES, UNCERTAINTY  # noqa: F401 - re-exported
from .patterns import PatternError, compile_pattern, matches

DIVERSE_POOL = 10  # diverse: cluster this many times n of the best candidates ...
DIVERSE_MAX = 5000  # ... but no more than this (or 2n), which bounds k-means' time in a web request
FEATURE_DIMS = 64  # diverse: SVD dimensions of the TF-IDF features


class QueryError(ValueError):
    """A query that cannot be run as asked (unknown strategy, bad n, bad regex, unknown label)."""


def _binary(p: np.ndarray) -> np.ndarray:
    """(n, L) sigmoid outputs -> (n, L, 2) per-label distributions."""
    return np.stack([1.0 - p, p], axis=-1)


def least_confidence(proba: np.ndarray, multilabel: bool = False) -> np.ndarray:
    """1 - the probability of the predicted class (higher = less sure)."""
    if multilabel:
        return (1.0 - _binary(proba).max(axis=-1)).mean(axis=1)
    return 1.0 - np.max(proba, axis=1)


def entropy(proba: np.ndarray, multilabel: bool = False) -> np.ndarray:
    """Shannon entropy of the predicted distribution (nats)."""
    p = np.clip(_binary(proba) if multilabel else proba, 1e-12, 1.0)
    h = -(p * np.log(p)).sum(axis=-1)
    return h.mean(axis=1) if multilabel else h


def margin(proba: np.ndarray, multilabel: bool = False) -> np.ndarray:
    """Breaking ties: 1 - (top probability - second probability); higher = closer tie."""
    if multilabel:
        return (1.0 - np.abs(2.0 * proba - 1.0)).mean(axis=1)
    top2 = np.sort(proba, axis=1)[:, -2:] if proba.shape[1] > 1 else np.hstack([np.zeros_like(proba), proba])
    return 1.0 - (top2[:, 1] - top2[:, 0])


def scores_for(strategy: str, proba: np.ndarray, *, multilabel: bool = False, label_index: int | None = None,
               seed: int = 0) -> np.ndarray:
    """A score per row, higher = pick first."""
    n = len(proba)
    if strategy == "random":
        return np.random.default_rng(seed).random(n)
    if strategy == "deterministic":  # corpus order: earlier rows first
        return -np.arange(n, dtype=float)
    if strategy == "least_confidence":
        return least_confidence(proba, multilabel)
    if strategy == "entropy":
        return entropy(proba, multilabel)
    if strategy == "margin":
        return margin(proba, multilabel)
    if strategy == "confident":  # the review order: the surest suggestions first
        return -least_confidence(proba, multilabel)
    if strategy == "maxprob":
        if label_index is None:
            raise QueryError("strategy maxprob needs a label")
        return proba[:, label_index]
    raise QueryError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")


def cold_start(counts: Mapping[str, int], classes: Sequence[str], minimum: int, multilabel: bool = False) -> bool:
    """Too few labels for scores to mean much: some class (multilabel: the median label) has fewer than
    ``minimum`` training labels. Multilabel uses the median because a rare label may take thousands of documents
    to reach ``minimum``, and waiting for it would keep selection random long after the model is useful."""
    per_class = sorted(counts.get(c, 0) for c in classes)
    if not per_class:
        return True
    return (per_class[len(per_class) // 2] if multilabel else per_class[0]) < minimum


def compile_regex(pattern: str | None) -> Any:
    """The RE2 pattern of a user's ``regex`` (model/patterns.py: linear-time), None for none; QueryError naming
    it when it is too long or RE2 refuses it."""
    if not pattern:
        return None
    try:
        return compile_pattern(pattern)
    except PatternError as exc:
        raise QueryError(str(exc)) from None


def query(proba: np.ndarray, n: int, strategy: str, *, texts: Sequence[str] | None = None,
          regex: str | None = None, multilabel: bool = False, label_index: int | None = None,
          seed: int = 0, batch: str = "top", counts: Mapping[str, int] | None = None,
          classes: Sequence[str] | None = None, thresholds: Sequence[float] | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``n`` rows to annotate next, best first, and their scores. ``regex`` keeps only rows whose
    text matches (RE2 ``search``, linear-time: model/patterns.py). Ties are broken by row order. ``batch`` (see the module doc): ``diverse`` needs
    ``texts``; ``balanced`` reads ``counts`` (training labels per class name) of ``classes`` (the columns of
    ``proba``) and, multilabel, the per-label ``thresholds`` (default 0.5)."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise QueryError(f"n must be a non-negative integer, got {n!r}")
    if strategy not in STRATEGIES:
        raise QueryError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    if batch not in BATCH_MODES:
        raise QueryError(f"unknown batch {batch!r}; known: {', '.join(BATCH_MODES)}")
    if batch == "auto":
        batch = resolve_batch(batch, multilabel)
    pattern = compile_regex(regex)
    scores = scores_for(strategy, proba, multilabel=multilabel, label_index=label_index, seed=seed)
    keep = np.arange(len(scores))
    if pattern is not None:
        if texts is None:
            raise QueryError("a regex needs the texts")
        keep = np.array([i for i in keep if matches(pattern, texts[i])], dtype=int)
    if n == 0 or len(keep) == 0:
        return np.zeros(0, dtype=int), np.zeros(0)
    ranked = keep[np.lexsort((keep, -scores[keep]))]
    if batch == "diverse" and strategy not in ("random", "deterministic") and len(ranked) > n:
        if texts is None:
            raise QueryError("a diverse batch needs the texts")
        order = _diverse(ranked, n, texts, seed)
    elif batch == "balanced" and strategy not in ("deterministic", "maxprob", "confident") and len(ranked) > n:
        names = list(classes) if classes is not None else [str(i) for i in range(proba.shape[1])]
        weights = np.array([1.0 / (1 + (counts or {}).get(c, 0)) for c in names])
        if multilabel:
            th = np.asarray(thresholds if thresholds is not None else [0.5] * len(names), dtype=float)
            order = _balanced_multilabel(ranked, proba, th, weights, n)
        else:
            order = _balanced(ranked, proba.argmax(axis=1), weights, n)
    else:
        order = ranked[:n]
    return order, scores[order]


def resolve_batch(batch: str, multilabel: bool) -> str:
    """``auto`` -> ``balanced`` for a multilabel scheme (rare labels), ``top`` otherwise."""
    if batch != "auto":
        return batch
    return "balanced" if multilabel else "top"


def text_features(texts: Sequence[str], dims: int = FEATURE_DIMS, seed: int = 0) -> np.ndarray:
    """Unit rows in a space where similar texts are close: TF-IDF word 1-2 grams of ``texts``, reduced to at most
    ``dims`` dimensions by truncated SVD. Fitted on ``texts`` themselves, so it needs no model."""
    from sklearn.decomposition import TruncatedSVD  # noqa: PLC0415
    from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: PLC0415

    x = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, dtype=np.float32).fit_transform(
        [t if t.strip() else "\u2205" for t in texts])
    k = min(dims, x.shape[1] - 1, x.shape[0] - 1)
    dense = TruncatedSVD(k, random_state=seed).fit_transform(x) if k >= 2 else x.toarray()
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    return dense / np.where(norms > 0, norms, 1.0)


def _diverse(ranked: np.ndarray, n: int, texts: Sequence[str], seed: int) -> np.ndarray:
    """One per k-means cluster of the DIVERSE_POOL * n best: each cluster's best-ranked member, in rank order."""
    from sklearn.cluster import KMeans  # noqa: PLC0415

    cands = ranked[: max(2 * n, min(DIVERSE_POOL * n, DIVERSE_MAX))]
    if len(cands) <= n:
        return cands
    feats = text_features([texts[i] for i in cands], seed=seed)
    groups = KMeans(n_clusters=n, n_init=1, max_iter=50, random_state=seed).fit_predict(feats)
    first: dict[int, int] = {}
    for pos, g in enumerate(groups):  # cands are in rank order: the first of a group is its best
        first.setdefault(int(g), pos)
    picked = sorted(first.values())
    if len(picked) < n:  # k-means can leave a cluster empty or merge duplicates: fill by rank
        taken = set(picked)
        picked += [p for p in range(len(cands)) if p not in taken][: n - len(picked)]
        picked.sort()
    return cands[picked]


def _quotas(weights: np.ndarray, n: int) -> np.ndarray:
    """``n`` split in proportion to ``weights`` (largest remainder)."""
    raw = n * weights / weights.sum()
    q = np.floor(raw).astype(int)
    for j in np.argsort(-(raw - q), kind="stable")[: n - int(q.sum())]:
        q[j] += 1
    return q


def _balanced(ranked: np.ndarray, predicted: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Per predicted class, its quota of the best-ranked; what a class cannot fill goes to the best of the rest."""
    quota = _quotas(weights, n)
    picked: list[int] = []
    rest: list[int] = []
    for i in ranked:
        c = predicted[i]
        if quota[c] > 0:
            quota[c] -= 1
            picked.append(int(i))
        else:
            rest.append(int(i))
    picked += rest[: n - len(picked)]
    rank = {int(i): r for r, i in enumerate(ranked)}
    return np.array(sorted(picked, key=rank.__getitem__), dtype=int)


def _balanced_multilabel(ranked: np.ndarray, proba: np.ndarray, thresholds: np.ndarray, weights: np.ndarray,
                         n: int) -> np.ndarray:
    """Labels take turns, rarest first, each up to its quota: the untaken document whose probability is closest
    to that label's threshold (0 = on it, 1 = as far as it can be)."""
    cand = ranked
    p = proba[cand]
    span = np.maximum(thresholds, 1.0 - thresholds)
    closeness = 1.0 - np.abs(p - thresholds) / np.where(span > 0, span, 1.0)
    quota = _quotas(weights, n)
    queues = {j: list(np.lexsort((np.arange(len(cand)), -closeness[:, j]))) for j in range(p.shape[1])}
    taken: set[int] = set()
    picked: list[int] = []
    turn = [j for j in np.argsort(-weights, kind="stable") if quota[j] > 0]
    while len(picked) < n and turn:
        for j in list(turn):
            q = queues[j]
            while q and q[0] in taken:
                q.pop(0)
            if not q or quota[j] == 0:
                turn.remove(j)
                continue
            pos = q.pop(0)
            taken.add(pos)
            picked.append(pos)
            quota[j] -= 1
            if len(picked) == n:
                break
    picked += [pos for pos in range(len(cand)) if pos not in taken][: n - len(picked)]
    return cand[sorted(picked)]
