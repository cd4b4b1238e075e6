"""Each query strategy picks what it should on a toy model with known probabilities."""
from __future__ import annotations

import numpy as np
import pytest

from model.query import QueryError, entropy, least_confidence, margin, query

# classes a, b, c
P = np.array([
    [0.98, 0.01, 0.01],  # 0 sure
    [0.34, 0.33, 0.33],  # 1 maximally unsure: top for LC and entropy
    [0.50, 0.50, 0.00],  # 2 a perfect tie between two: top for margin
    [0.60, 0.20, 0.20],  # 3
    [0.10, 0.85, 0.05],  # 4 most "b"
])
TEXTS = ["free prize", "hello", "call now", "lunch?", "WIN cash"]


def test_least_confidence():
    assert list(query(P, 2, "least_confidence")[0]) == [1, 2]
    assert least_confidence(P)[0] == pytest.approx(0.02)


def test_entropy():
    assert list(query(P, 1, "entropy")[0]) == [1]
    assert entropy(P)[2] == pytest.approx(np.log(2), rel=1e-6)


def test_margin_breaks_ties():
    idx, scores = query(P, 2, "margin")
    assert list(idx) == [2, 1] and scores[0] == pytest.approx(1.0)
    assert margin(np.array([[0.7, 0.3]]))[0] == pytest.approx(0.6)


def test_maxprob_for_a_label():
    assert list(query(P, 2, "maxprob", label_index=1)[0]) == [4, 2]  # p(b) = .85, .50
    with pytest.raises(QueryError, match="label"):
        query(P, 2, "maxprob")


def test_random_is_seeded_and_deterministic_is_corpus_order():
    a, b = query(P, 5, "random", seed=1)[0], query(P, 5, "random", seed=1)[0]
    assert list(a) == list(b) and sorted(a) == [0, 1, 2, 3, 4]
    assert list(query(P, 3, "deterministic")[0]) == [0, 1, 2]


def test_regex_restricts():
    assert list(query(P, 5, "least_confidence", texts=TEXTS, regex=r"(?i)prize|cash")[0]) == [4, 0]
    with pytest.raises(QueryError, match="does not compile"):
        query(P, 1, "entropy", texts=TEXTS, regex="(")


def test_multilabel_combines_by_mean():
    ml = np.array([[0.5, 0.99], [0.7, 0.7], [0.01, 0.02]])  # per-label sigmoids
    # LC per label: row0 .5,.01 -> .255 ; row1 .3,.3 -> .3 ; row2 .01,.02 -> .015
    assert least_confidence(ml, multilabel=True) == pytest.approx([0.255, 0.3, 0.015])
    assert list(query(ml, 3, "least_confidence", multilabel=True)[0]) == [1, 0, 2]
    assert list(query(ml, 1, "entropy", multilabel=True)[0]) == [1]


@pytest.mark.parametrize("kw,needle", [({"strategy": "nope", "n": 1}, "unknown strategy"),
                                       ({"strategy": "entropy", "n": -1}, "non-negative"),
                                       ({"strategy": "entropy", "n": 1.5}, "non-negative")])
def test_bad_queries(kw, needle):
    with pytest.raises(QueryError, match=needle):
        query(P, **kw)


def test_edge_cases():
    assert len(query(P, 0, "entropy")[0]) == 0
    assert len(query(np.zeros((0, 3)), 5, "entropy")[0]) == 0
    assert list(query(P, 99, "least_confidence")[0]) == [1, 2, 3, 4, 0]
