"""The pool estimate: the model's expectation, corrected by random labels, with a bootstrap interval."""
from __future__ import annotations

import numpy as np

from model.estimate import corpus_weights, estimate


def _world(n: int, seed: int, overconfident: bool):
    """Documents of 3 classes; the model's top class is right with the chance ``sure``; its scores say ``sure``
    (calibrated) or more (overconfident)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    sure = rng.uniform(0.4, 1.0, n)
    right = rng.uniform(size=n) < sure
    top = np.where(right, y, (y + 1 + rng.integers(0, 2, n)) % 3)
    shown = np.minimum(sure + 0.25, 0.999) if overconfident else sure
    p = np.zeros((n, 3))
    p[:, :] = ((1 - shown) / 2)[:, None]
    p[np.arange(n), top] = shown
    return p, [["a", "b", "c"][k] for k in y], top == y


def _true_macro_f1(p, y):
    from sklearn.metrics import f1_score

    return f1_score(y, [["a", "b", "c"][k] for k in p.argmax(1)], average="macro")


def test_calibrated_model_alone_is_close_and_says_it_has_no_check():
    pool, y_pool, _ = _world(3000, 1, overconfident=False)
    out = estimate(pool, np.zeros((0, 3)), [], ["a", "b", "c"], multilabel=False)
    truth = _true_macro_f1(pool, y_pool)
    assert abs(out["metrics"]["f1_macro"]["value"] - truth) < 0.02
    assert out["metrics"]["f1_macro"]["low"] is None and out["n_random"] == 0 and "no interval" in out["method"]


def test_random_labels_correct_an_overconfident_model_and_the_interval_covers_the_truth():
    pool, y_pool, _ = _world(3000, 2, overconfident=True)
    truth = _true_macro_f1(pool, y_pool)
    alone = estimate(pool, np.zeros((0, 3)), [], ["a", "b", "c"], multilabel=False)["metrics"]["f1_macro"]["value"]
    assert alone - truth > 0.1  # trusting an overconfident model's scores overestimates it
    covered = 0
    for seed in range(20):
        rnd, y_rnd, _ = _world(80, 100 + seed, overconfident=True)
        out = estimate(pool, rnd, y_rnd, ["a", "b", "c"], multilabel=False, seed=seed)
        m = out["metrics"]["f1_macro"]
        assert abs(m["value"] - truth) < abs(alone - truth)
        covered += m["low"] <= truth <= m["high"]
        assert out["n_random"] == 80 and out["n_pool"] == 3000 and "corrected by 80" in out["method"]
    assert covered >= 17  # a 95% interval


def test_multilabel_and_binary_headline():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=(2000, 2))
    y = [tuple(c for c, on in zip("xy", rng.uniform(size=2) < row) if on) for row in p]
    out = estimate(p[:1500], p[1500:], y[1500:], ["x", "y"], multilabel=True, thresholds=[0.5, 0.5])
    assert set(out["metrics"]) == {"f1_macro", "f1_micro", "f1"}
    assert 0.5 < out["metrics"]["f1_macro"]["value"] < 0.9
    b = estimate(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.9, 0.1], [0.3, 0.7]]), ["ham", "spam"],
                 ["ham", "spam"], multilabel=False, positive="spam")
    # expected rates (ham,ham) .45 (spam,ham) .05 (ham,spam) .1 (spam,spam) .4, corrected by +.05 -.05 -.15 +.15
    assert b["metrics"]["f1"]["value"] == 1.0 and b["metrics"]["accuracy"]["value"] == 1.0
    assert b["metrics"]["accuracy"]["low"] is None and "corrected by 2 random" in b["method"]
    assert "no interval until 30" in b["method"]  # no interval yet
    assert estimate(np.zeros((0, 2)), np.zeros((0, 2)), [], ["a", "b"], multilabel=False)["method"] == "none"


def test_with_no_pool_left_the_labels_themselves_are_the_estimate():
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]] * 10)
    out = estimate(np.zeros((0, 2)), p, ["a", "b", "b", "b"] * 10, ["a", "b"], multilabel=False)
    assert out["metrics"]["accuracy"]["value"] == 0.75 and "no unlabelled documents left" in out["method"]
    assert out["metrics"]["accuracy"]["low"] <= 0.75 <= out["metrics"]["accuracy"]["high"]


def test_the_estimate_is_of_the_corpus_not_of_the_easy_pool_active_learning_leaves():
    """Active learning takes the hard documents out of the pool: the pool alone flatters the model. With the labels'
    out-of-fold predictions (what happened there is known) weighted by their count, the estimate is the corpus's."""
    easy, y_easy, _ = _world(4000, 5, overconfident=False)
    hard, y_hard, _ = _world(1000, 6, overconfident=False)
    hard[:] = hard * 0.0 + 1 / 3  # the hard ones: the model has no idea (a third right)
    rng = np.random.default_rng(7)
    hard_top = rng.integers(0, 3, 1000)
    hard[np.arange(1000), hard_top] += 0.01
    truth = _true_macro_f1(np.vstack([easy, hard]), y_easy + y_hard)
    pool_only = estimate(easy[:2000], easy[3900:], y_easy[3900:], ["a", "b", "c"], multilabel=False)
    corpus = estimate(easy[:2000], easy[3900:], y_easy[3900:], ["a", "b", "c"], multilabel=False,
                      labelled_proba=hard, labelled_y=y_hard, n_pool=4000)
    assert pool_only["metrics"]["f1_macro"]["value"] - truth > 0.05
    m = corpus["metrics"]["f1_macro"]
    assert abs(m["value"] - truth) < 0.03 and m["low"] <= truth <= m["high"]
    assert corpus["n_labels"] == 1000 and corpus["n_pool"] == 4000 and "1000 labelled documents" in corpus["method"]


def test_corpus_weights_let_random_labels_speak_for_the_pool():
    audit = [True] * 30 + [False] * 70
    w = corpus_weights(audit, n_pool=900)
    assert w[0] == 1 + 900 / 30 and w[-1] == 1.0 and w.sum() == 100 + 900
    assert corpus_weights(audit[1:], n_pool=900) is None  # 29 random labels: too few to speak for the pool
    assert corpus_weights(audit, n_pool=0) is None
