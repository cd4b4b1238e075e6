"""Model family, evaluation and query strategy. The RNN must learn: score floors on held-out data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model.base import NotFittedError
from model.evaluate import evaluate, positive_class, stratified_split
from model.factory import load_classifier, make_classifier
from model.query import least_confidence, query
from model.rnn import RNNClassifier
from model.factory import save_version

from ..conftest import SHARED, SMS_CSV


@pytest.fixture(scope="module")
def sms():
    df = pd.read_csv(SMS_CSV, keep_default_na=False)
    return df.text.tolist(), df.label.tolist()


@pytest.fixture(scope="module")
def sms_model(sms):
    texts, labels = sms
    tr, te = stratified_split(labels, 0.2, 42)
    clf = RNNClassifier(random_state=42).fit([texts[i] for i in tr], [labels[i] for i in tr])
    return clf, [texts[i] for i in te], [labels[i] for i in te]


def test_rnn_spam_quality_floor(sms_model):
    """Stratified 80/20 of SMS spam: spam F1 >= 0.93 on the held-out 20 % (measured 0.95-0.96)."""
    clf, x_te, y_te = sms_model
    m = evaluate(y_te, clf.predict(x_te), clf.classes_, positive_class(clf.classes_))
    assert m["positive"] == "spam" and m["n"] == 1115
    assert m["f1"] >= 0.93, m
    assert m["accuracy"] >= 0.98, m


def test_predict_proba_shape_and_order(sms_model):
    clf, x_te, _ = sms_model
    p = clf.predict_proba(x_te[:7])
    assert p.shape == (7, 2) and np.allclose(p.sum(axis=1), 1.0)
    assert list(clf.classes_) == ["ham", "spam"]
    assert clf.predict_proba([]).shape == (0, 2)


def test_h5_round_trip_is_identical_and_retrainable(sms_model, tmp_path):
    clf, x_te, y_te = sms_model
    folder = save_version(clf, tmp_path, "v1", {"family": "rnn"})
    assert {p.name for p in folder.iterdir()} == {"model.h5", "vocab.json", "rnn.json", "meta.json"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    loaded = load_classifier(folder)
    assert np.allclose(loaded.predict_proba(x_te[:200]), clf.predict_proba(x_te[:200]), atol=1e-6)
    loaded.refit(x_te[:64], y_te[:64], epochs=1)  # the seed's load_model(h5)+fit() fails in Keras 3.15; ours works
    assert loaded.predict_proba(x_te[:5]).shape == (5, 2)


def test_model_h5_is_usable_alone(sms_model, tmp_path):
    """model.h5 + vocab.json can be taken out and used elsewhere with plain Keras."""
    import json

    import keras

    clf, x_te, _ = sms_model
    folder = save_version(clf, tmp_path, "v1", {"family": "rnn"})
    model = keras.models.load_model(folder / "model.h5", compile=False)
    vec = keras.layers.TextVectorization(vocabulary=json.loads((folder / "vocab.json").read_text()), ragged=True)
    ids = keras.utils.pad_sequences(vec(x_te[:3]).to_list(), maxlen=clf.seq_len_, padding="pre", truncating="post")
    assert np.allclose(model.predict_on_batch(ids)[:, 0], clf.predict_proba(x_te[:3])[:, 1], atol=1e-6)


@pytest.fixture(scope="module")
def ag_news():
    df = pd.read_csv(SHARED / "data" / "ag_news" / "ag_news_test.csv", keep_default_na=False)
    tr, te = stratified_split(df.label.tolist(), 0.25, 0)
    return df, tr[:3000], te


@pytest.mark.parametrize("cell,floor", [("simple_rnn", 0.45), ("gru", 0.70)])  # measured 0.52 and 0.78; chance 0.25
def test_multiclass_learns_ag_news(ag_news, cell, floor):
    df, tr, te = ag_news
    clf = make_classifier("rnn", cell=cell, epochs=10 if cell == "simple_rnn" else 6, random_state=0)
    clf.fit(df.text.iloc[tr].tolist(), df.label.iloc[tr].tolist())
    assert len(clf.classes_) == 4 and clf.predict_proba(["a"]).shape == (1, 4)
    m = evaluate(df.label.iloc[te].tolist(), clf.predict(df.text.iloc[te].tolist()), clf.classes_)
    assert m["f1"] == m["f1_macro"] and "positive" not in m
    assert m["accuracy"] >= floor, m


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="2 classes"):
        RNNClassifier().fit(["a", "b"], ["x", "x"])
    with pytest.raises(ValueError, match="2 texts but 1"):
        RNNClassifier().fit(["a", "b"], ["x"])
    with pytest.raises(NotFittedError):
        RNNClassifier().predict_proba(["a"])
    with pytest.raises(ValueError, match="unknown model family"):
        make_classifier("nope")


def test_evaluate_metrics_by_hand():
    # true a a b b c ; predicted a b b b a   (c never predicted)
    m = evaluate(["a", "a", "b", "b", "c"], ["a", "b", "b", "b", "a"], ["a", "b", "c"], ids=list("vwxyz"),
                 proba=np.array([[.9, .1, 0], [.4, .6, 0], [.2, .8, 0], [.1, .9, 0], [.5, .3, .2]]))
    assert m["dataset"] == "validation" and m["n"] == 5 and m["accuracy"] == 0.6
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["per_class"]["b"] == {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    assert m["per_class"]["c"] == {"precision": None, "recall": 0.0, "f1": 0.0, "support": 1}  # never predicted
    assert m["f1_macro"] == pytest.approx((0.5 + 0.8 + 0) / 3) and m["f1"] == m["f1_macro"]
    assert m["f1_micro"] == pytest.approx(0.6)
    assert m["f1_weighted"] == pytest.approx((0.5 * 2 + 0.8 * 2 + 0) / 5)
    # MCC by hand: c_k (true counts) = 2,2,1; p_k (predicted) = 2,3,0; s = 5, c (correct) = 3
    mcc = (3 * 5 - (2 * 2 + 2 * 3 + 1 * 0)) / np.sqrt((25 - (4 + 9 + 0)) * (25 - (4 + 4 + 1)))
    assert m["mcc"] == pytest.approx(mcc)
    assert m["confusion_matrix"]["matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["false_predictions"] == [{"id": "w", "true": "a", "predicted": "b", "probability": 0.6},
                                      {"id": "z", "true": "c", "predicted": "a", "probability": 0.5}]
    b = evaluate(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"], positive="b", dataset="test")
    assert b["f1"] == 0.8 and b["positive"] == "b" and b["dataset"] == "test"
    assert evaluate([], [], ["a", "b"])["n"] == 0
    assert positive_class(["false", "true"]) == "true" and positive_class(["a", "b", "c"]) is None


def test_least_confident_first():
    p = np.array([[0.9, 0.1], [0.55, 0.45], [0.5, 0.5], [0.2, 0.8]])
    assert list(query(p, 3, "least_confidence")[0]) == [2, 1, 3]
    assert np.allclose(least_confidence(p), [0.1, 0.45, 0.5, 0.2])
    assert len(query(p, 0, "least_confidence")[0]) == 0


def test_warm_refits_do_not_degrade(sms_model, sms, tmp_path):
    """Repeated warm retrains (the loop's fast path) keep a full fit's quality band (full fits: 0.93-0.965;
    measured here 0.965 -> 0.94 after 8 warm refits)."""
    clf, x_te, y_te = sms_model
    copy = load_classifier(save_version(clf, tmp_path, "v1", {"family": "rnn"}))
    texts, labels = sms
    tr, _ = stratified_split(labels, 0.2, 42)
    x_tr, y_tr = [texts[i] for i in tr], [labels[i] for i in tr]
    f1 = lambda c: evaluate(y_te, c.predict(x_te), c.classes_, "spam")["f1"]  # noqa: E731
    for _ in range(8):
        copy.refit(x_tr, y_tr)
    assert f1(copy) >= 0.92


def test_multilabel_learns_goemotions():
    """Multilabel (sigmoid per label) on GoEmotions: it must beat predicting nothing and the majority label."""
    from model.evaluate import evaluate_multilabel

    df = pd.read_csv(SHARED / "data" / "goemotions" / "goemotions_dev.csv", keep_default_na=False)
    rows = [tuple(x.split(";")) for x in df["labels"]]
    keep = ["admiration", "amusement", "gratitude", "love", "neutral"]  # the frequent ones, for a quick test
    rows = [tuple(lab for lab in r if lab in keep) for r in rows]
    idx = [i for i, r in enumerate(rows) if r]
    tr, te = idx[: int(len(idx) * 0.75)], idx[int(len(idx) * 0.75):]
    clf = RNNClassifier(epochs=8, random_state=0).fit(df.text.iloc[tr].tolist(), [rows[i] for i in tr])
    assert clf.multilabel_ and list(clf.classes_) == sorted(keep)
    p = clf.predict_proba(df.text.iloc[te].tolist()[:3])
    assert p.shape == (3, 5) and ((p >= 0) & (p <= 1)).all()
    m = evaluate_multilabel([rows[i] for i in te], clf.predict(df.text.iloc[te].tolist()), clf.classes_)
    assert m["multilabel"] and set(m["per_class"]) == set(keep)
    # measured 0.636; answering "neutral" for every text scores 0.558 here
    assert m["f1_micro"] >= 0.60, m
    assert m["per_class"]["gratitude"]["f1"] >= 0.7  # measured 0.85: a label with clear words ("thanks")


def test_multilabel_metrics_by_hand():
    from model.evaluate import evaluate_multilabel

    m = evaluate_multilabel([("a",), ("a", "b"), ("c",)], [("a",), ("a",), ()], ["a", "b", "c"], ids=["x", "y", "z"])
    assert m["accuracy"] == pytest.approx(1 / 3) and m["hamming_loss"] == pytest.approx(2 / 9)
    assert m["per_class"]["a"]["precision"] == 1.0 and m["per_class"]["b"]["precision"] is None
    assert m["f1_micro"] == pytest.approx(2 * 2 / (2 * 2 + 0 + 2))  # tp=2, fp=0, fn=2
    assert [fp["id"] for fp in m["false_predictions"]] == ["y", "z"]
