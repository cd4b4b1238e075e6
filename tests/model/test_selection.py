"""The round's pure parts: folds, choice, the single-class guard, the gate's evidence, kappa; and calibration."""
from __future__ import annotations

import numpy as np
import pytest

from model import calibration
from model.selection import align, assign_folds, choose, fold_count, gate, sign_test, single_class
from model.stopping import cohen_kappa


def test_folds_are_stratified_stable_and_cover_every_row():
    keys = [f"d{i}" for i in range(103)]
    ys = ["spam" if i % 7 == 0 else "ham" for i in range(103)]
    folds = assign_folds(keys, ys, 5)
    assert set(folds.tolist()) == set(range(5))
    for f in range(5):  # every class in every fold, sizes within one of each other
        assert {ys[i] for i in np.flatnonzero(folds == f)} == {"spam", "ham"}
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1
    shuffled = list(reversed(range(103)))  # the order labels arrived in does not matter
    again = assign_folds([keys[i] for i in shuffled], [ys[i] for i in shuffled], 5)
    assert [again[j] for j in range(103)] == [folds[i] for i in shuffled]
    multi = assign_folds(keys, [("a",) if i % 2 else ("b", "a") for i in range(103)], 4)
    assert set(multi.tolist()) <= set(range(4))
    assert fold_count(ys[:6], 5) == 3 and fold_count(ys, 5) == 5 and fold_count(ys[:3], 5) == 2


def test_align_puts_an_unseen_class_at_zero():
    p = np.array([[0.2, 0.8]])
    assert align(p, ["a", "c"], ["a", "b", "c"]).tolist() == [[0.2, 0.0, 0.8]]


def test_choose_prefers_the_first_listed_within_the_margin():
    assert choose([0.950, 0.955, 0.990], 0.01) == 2
    assert choose([0.950, 0.955, 0.958], 0.01) == 0
    assert choose([None, 0.5], 0.0) == 1


def test_single_class_guard_only_when_every_class_has_labels():
    ys = ["a"] * 10 + ["b"] * 5
    assert single_class(["a"] * 15, ys) == "a"
    assert single_class(["a"] * 14 + ["b"], ys) is None
    assert single_class(["a"] * 14, ["a"] * 10 + ["b"] * 4) is None  # b has too few labels to expect it
    assert single_class([("a",)], [("a",)]) is None  # multilabel: not judged this way


def test_gate_needs_evidence_to_reject_and_keeps_its_protection():
    common = dict(key="f1_macro", champion_version=3, alpha=0.05, max_drop=0.10, more_labels=20)
    # no new labels: the model trained on more labels wins
    d = gate(candidate_new=None, champion_new=None, candidate_right=[], champion_right=[], **common)
    assert d.status == "champion" and "20 more labels" in d.reason
    # a few disagreements the champion wins: not enough evidence
    d = gate(candidate_new=None, champion_new=None, candidate_right=[False, False, True],
             champion_right=[True, True, True], **common)
    assert d.status == "champion"
    # the champion wins all 8 disagreements: p = 1/256
    d = gate(candidate_new=0.75, champion_new=0.80, candidate_right=[False] * 8 + [True] * 20,
             champion_right=[True] * 28, **common)
    assert d.status == "rejected" and "sign test p=0.004" in d.reason
    # a broken fit: far under the champion on the same new labels
    d = gate(candidate_new=0.40, champion_new=0.85, candidate_right=[True] * 12, champion_right=[True] * 12, **common)
    assert d.status == "rejected" and "broken fit" in d.reason and "on the 12 labels v3 never saw" in d.reason
    # a later candidate's lower score on other (harder) labels is no evidence: only the same labels count
    d = gate(candidate_new=0.80, champion_new=0.78, candidate_right=[True] * 12, champion_right=[True] * 12, **common)
    assert d.status == "champion"
    assert sign_test(0, 0) == 1.0 and sign_test(4, 0) == 1.0 and sign_test(0, 4) == pytest.approx(1 / 16)


def test_cohen_kappa():
    assert cohen_kappa([], []) is None
    assert cohen_kappa(list("aabb"), list("aabb")) == 1.0
    assert cohen_kappa(list("aaaa"), list("aaaa")) == 1.0
    assert cohen_kappa(list("abab"), list("baba")) == pytest.approx(-1.0)
    assert 0 < cohen_kappa(list("aabbab"), list("aabbba")) < 1


def test_temperature_scaling_fixes_an_underconfident_model_and_keeps_its_ranking():
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.integers(0, 3, n)
    sure = rng.uniform(0.5, 0.99, n)  # the true chance of being right
    right = rng.uniform(size=n) < sure
    top = np.where(right, y, (y + 1 + rng.integers(0, 2, n)) % 3)
    logits = np.zeros((n, 3))
    logits[np.arange(n), top] = np.log(sure / ((1 - sure) / 2))
    p_true = calibration._softmax(logits)
    shrunk = calibration._softmax(logits / 3.0)  # the same ranking, scores squeezed towards 1/3
    names = ["a", "b", "c"]
    labels = [names[k] for k in y]
    before = calibration.ece(*calibration.shown(shrunk, labels, names, False))
    cal = calibration.fit(shrunk, labels, names, False)
    after_p = calibration.apply(cal, shrunk)
    after = calibration.ece(*calibration.shown(after_p, labels, names, False))
    assert before > 0.2 and after < 0.03 and cal["t"] == pytest.approx(1 / 3, rel=0.15)
    assert (after_p.argmax(1) == shrunk.argmax(1)).all()
    assert calibration.ece(*calibration.shown(p_true, labels, names, False)) < 0.03


def test_platt_per_label_for_multilabel_and_nothing_to_fit_is_identity():
    rng = np.random.default_rng(1)
    n = 3000
    p = rng.uniform(0.01, 0.99, (n, 2))
    truth = rng.uniform(size=(n, 2)) < p ** 3  # overconfident scores
    labels = [tuple(c for c, t in zip("xy", row) if t) for row in truth]
    cal = calibration.fit(p, labels, ["x", "y"], True)
    before = calibration.ece(*calibration.shown(p, labels, ["x", "y"], True))
    after = calibration.ece(*calibration.shown(calibration.apply(cal, p), labels, ["x", "y"], True))
    assert cal["kind"] == "platt" and after < before / 3
    assert calibration.fit_platt(np.array([0.2, 0.9]), np.array([False, True])) == (1.0, 0.0)
    assert calibration.apply(None, p) is not None and np.allclose(calibration.apply(None, p), p)
    bins = calibration.reliability(np.array([0.05, 0.95]), np.array([False, True]))
    assert len(bins) == 10 and bins[0]["n"] == 1 and bins[9]["accuracy"] == 1.0


def test_calibration_weighted_towards_the_pool_holds_on_the_corpus():
    """Active learning labels the hard documents, where the model is overconfident; on the easy pool it is too
    modest. A temperature fitted on the labels alone suits the hard ones; with the random labels also standing for
    the pool (corpus_weights) it suits the corpus, where the scores are shown."""
    from model.estimate import corpus_weights

    rng = np.random.default_rng(4)
    names = ["a", "b", "c"]

    def docs(n, squeeze):
        y = rng.integers(0, 3, n)
        sure = rng.uniform(0.5, 0.99, n)
        top = np.where(rng.uniform(size=n) < sure, y, (y + 1 + rng.integers(0, 2, n)) % 3)
        logits = np.zeros((n, 3))
        logits[np.arange(n), top] = np.log(sure / ((1 - sure) / 2))
        return calibration._softmax(logits / squeeze), [names[k] for k in y]

    hard_p, hard_y = docs(600, 0.7)  # overconfident where active learning looks
    pool_p, pool_y = docs(5000, 2.0)  # too modest on the rest
    audit_p, audit_y = pool_p[:60], pool_y[:60]
    labels_p, labels_y = np.vstack([hard_p, audit_p]), hard_y + audit_y
    w = corpus_weights([False] * 600 + [True] * 60, n_pool=4940)
    corpus_p, corpus_y = np.vstack([hard_p, pool_p]), hard_y + pool_y

    def corpus_ece(cal):
        return calibration.ece(*calibration.shown(calibration.apply(cal, corpus_p), corpus_y, names, False))

    plain, weighted = calibration.fit(labels_p, labels_y, names, False), calibration.fit(labels_p, labels_y, names,
                                                                                           False, w)
    assert weighted["weighted"] and "weighted" not in plain
    assert corpus_ece(weighted) < 0.05 < corpus_ece(plain)
