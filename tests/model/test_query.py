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


@pytest.mark.timeout(60)  # Python's backtracking re takes hours on this (2^40 ways to split the run)
def test_regex_is_linear_time_and_refuses_what_re2_cannot_run():
    texts = ["a" * 40 + "!", "a" * 9_000 + "!", "call now", "aaa"]  # within MAX_SCAN_CHARS
    proba = np.full((4, 2), 0.5)
    assert sorted(query(proba, 4, "entropy", texts=texts, regex=r"(a+)+$")[0]) == [3]
    assert sorted(query(proba, 4, "entropy", texts=texts, regex=r"^(a|aa)+!$")[0]) == [0, 1]
    for bad, needle in [(r"(a)\1", "invalid escape"), (r"(?=a)b", "invalid perl operator"),
                        (r"(?<!x)y", "look-arounds"), ("a{5000}", "repetition"), ("x" * 501, "at most 500")]:
        with pytest.raises(QueryError, match=needle):
            query(proba, 1, "entropy", texts=texts, regex=bad)


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


# -- batch modes --------------------------------------------------------------------------------------------

def test_a_diverse_batch_takes_one_per_group_of_near_duplicates():
    # the 6 most uncertain are two templates repeated; a top-3 batch takes three copies of the first template
    texts = ["win a free prize now"] * 3 + ["your parcel is waiting at the depot"] * 3 + \
        ["meeting moved to friday afternoon", "lunch at the canteen today?", "cheap loans call this number"]
    p_spam = np.array([0.50, 0.51, 0.49, 0.52, 0.48, 0.53, 0.80, 0.10, 0.70])
    proba = np.stack([1 - p_spam, p_spam], axis=1)
    top, _ = query(proba, 3, "margin", texts=texts)
    assert {texts[i] for i in top} == {texts[0]}
    diverse, scores = query(proba, 3, "margin", texts=texts, batch="diverse")
    assert len({texts[i] for i in diverse}) == 3 and len(set(diverse)) == 3
    assert list(scores) == sorted(scores, reverse=True)  # still best first
    with pytest.raises(QueryError, match="needs the texts"):
        query(proba, 3, "margin", batch="diverse")


def test_a_balanced_batch_gives_the_rare_class_most_of_it():
    rng = np.random.default_rng(0)
    p_spam = rng.uniform(0.0, 1.0, 200)
    proba = np.stack([1 - p_spam, p_spam], axis=1)
    counts = {"ham": 90, "spam": 10}
    top, _ = query(proba, 10, "least_confidence")
    idx, _ = query(proba, 10, "least_confidence", batch="balanced", counts=counts, classes=["ham", "spam"])
    assert len(set(idx)) == 10
    assert sum(p_spam[idx] >= 0.5) == 9  # quotas 1/91 : 1/11 of 10 -> 1 ham, 9 spam
    assert sum(p_spam[top] >= 0.5) < 9
    # within the predicted-spam group, the most uncertain come first
    spam = [i for i in idx if p_spam[i] >= 0.5]
    assert max(p_spam[spam]) < min(p for p in p_spam if p >= 0.5 and p not in p_spam[spam]) + 1e-12


def test_a_balanced_multilabel_batch_covers_rare_labels():
    # label 0 is frequent and uncertain everywhere; labels 1 and 2 are rare, each uncertain on a few documents
    n = 60
    proba = np.zeros((n, 3))
    proba[:, 0] = 0.5
    proba[:, 1] = 0.02
    proba[:, 2] = 0.02
    proba[[10, 11], 1] = 0.45
    proba[[20, 21], 2] = 0.40
    proba[[10, 11, 20, 21], 0] = 0.97  # sure about the frequent label there
    counts = {"joy": 300, "grief": 2, "pride": 3}
    mean_idx, _ = query(proba, 6, "margin", multilabel=True)
    assert not {10, 11, 20, 21} & set(mean_idx)  # the mean is dominated by the frequent label
    idx, _ = query(proba, 6, "margin", multilabel=True, batch="balanced", counts=counts,
                   classes=["joy", "grief", "pride"], thresholds=[0.5, 0.4, 0.4])
    assert {10, 11, 20, 21} <= set(idx) and len(set(idx)) == 6


def test_batch_modes_keep_the_regex_and_the_rules():
    texts = [f"call {i}" if i % 2 else f"text {i}" for i in range(40)]
    proba = np.stack([np.linspace(0, 1, 40), 1 - np.linspace(0, 1, 40)], axis=1)
    for batch in ("diverse", "balanced"):
        idx, _ = query(proba, 5, "margin", texts=texts, regex="call", batch=batch, counts={"0": 1, "1": 5})
        assert len(idx) == 5 and all(texts[i].startswith("call") for i in idx)
    assert len(query(proba, 50, "margin", texts=texts, batch="diverse")[0]) == 40  # n above the pool: all of it
    with pytest.raises(QueryError, match="unknown batch"):
        query(proba, 5, "margin", batch="clusters")


def test_cold_start_rule():
    from model.query import cold_start

    assert cold_start({"a": 5, "b": 2}, ["a", "b"], 3)
    assert not cold_start({"a": 5, "b": 3}, ["a", "b"], 3)
    # multilabel: the median label decides, so one rare label does not keep selection random
    assert not cold_start({"a": 9, "b": 4, "c": 1}, ["a", "b", "c"], 3, multilabel=True)
    assert cold_start({"a": 9, "b": 2, "c": 1}, ["a", "b", "c"], 3, multilabel=True)
    assert cold_start({}, [], 3)


def test_auto_batch_is_top_for_single_label_and_balanced_for_multilabel():
    from model.query import resolve_batch

    assert resolve_batch("auto", False) == "top" and resolve_batch("auto", True) == "balanced"
    assert resolve_batch("top", True) == "top"
    texts = [f"doc {i} about {'cats' if i % 2 else 'dogs'}" for i in range(50)]
    proba = np.random.default_rng(1).uniform(size=(50, 3))
    for multilabel, mode in ((False, "top"), (True, "balanced")):
        kw = dict(texts=texts, multilabel=multilabel, counts={"0": 9, "1": 1, "2": 1}, classes=["0", "1", "2"])
        assert list(query(proba, 5, "margin", batch="auto", **kw)[0]) == list(query(proba, 5, "margin", batch=mode,
                                                                                  **kw)[0])


def test_regex_filter_bounded_in_program_size_and_text_scanned():
    from model.patterns import MAX_SCAN_CHARS, PatternError, compile_pattern, matches

    with pytest.raises(PatternError, match="RE2 instructions"):
        compile_pattern("(.*a){1000}$")
    p = compile_pattern("(?i)prize")
    assert matches(p, "win a PRIZE now") and not matches(p, "x" * MAX_SCAN_CHARS + " prize")
