"""The quick family (TF-IDF word+char n-grams + calibrated linear SVM): it learns, round-trips, and keeps the
interface's shapes for binary, multiclass and multilabel schemes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from model.factory import load_classifier, make_classifier
from model.quick import QuickClassifier
from model.factory import save_version

from ..conftest import SHARED, SMS_CSV


@pytest.fixture(scope="module")
def sms():
    df = pd.read_csv(SMS_CSV, keep_default_na=False)
    return train_test_split(df, test_size=0.2, stratify=df.label, random_state=42)


def test_quick_learns_sms_spam(sms):
    tr, te = sms
    clf = QuickClassifier().fit(list(tr.text), list(tr.label))
    assert f1_score(te.label, clf.predict(list(te.text)), pos_label="spam") >= 0.96  # reference: 0.976
    p = clf.predict_proba(list(te.text[:50]))
    assert p.shape == (50, 2) and list(clf.classes_) == ["ham", "spam"] and np.allclose(p.sum(axis=1), 1)
    assert "calibration" in clf.estimator_


def test_quick_save_load_identical(sms, tmp_path):
    tr, te = sms
    clf = make_classifier("quick", epochs=3, cell="gru", random_state=1)  # rnn-only params are ignored
    clf.fit(list(tr.text[:800]), list(tr.label[:800]))
    folder = save_version(clf, tmp_path, "v1", {"family": "quick"})
    back = load_classifier(folder)
    assert isinstance(back, QuickClassifier) and back.random_state == 1
    assert np.array_equal(back.predict_proba(list(te.text)), clf.predict_proba(list(te.text)))


def test_quick_multiclass_ag_news():
    df = pd.read_csv(SHARED / "data" / "ag_news" / "ag_news_test.csv", keep_default_na=False)
    text_col = "text" if "text" in df else df.columns[-1]
    label_col = "label" if "label" in df else df.columns[0]
    df = df.sample(n=3000, random_state=0)
    tr, te = train_test_split(df, test_size=0.25, stratify=df[label_col], random_state=0)
    clf = QuickClassifier().fit(list(tr[text_col]), [str(x) for x in tr[label_col]])
    p = clf.predict_proba(list(te[text_col]))
    assert p.shape == (len(te), 4)
    # columns follow classes_: the argmax column's name is the prediction
    assert list(clf.classes_[p.argmax(axis=1)]) == list(clf.predict(list(te[text_col])))
    assert f1_score([str(x) for x in te[label_col]], clf.predict(list(te[text_col])), average="macro") >= 0.80


def test_quick_multilabel_shapes_and_constant_labels():
    texts = ["i love it", "so funny lol", "thanks a lot", "love and thanks", "lol thanks", "meh"] * 5
    labels = [("love",), ("fun",), ("thanks",), ("love", "thanks"), ("fun", "thanks"), ()] * 5
    clf = QuickClassifier().fit(texts, labels)
    assert clf.multilabel_ and list(clf.classes_) == ["fun", "love", "thanks"]
    p = clf.predict_proba(["love you", "lol"])
    assert p.shape == (2, 3) and ((p >= 0) & (p <= 1)).all()
    assert clf.predict(["thanks so much"])[0] == ("thanks",)


def test_quick_few_examples_and_bad_input():
    clf = QuickClassifier().fit(["win cash now", "hi mum", "see you", "lunch?"], ["spam", "ham", "ham", "ham"])
    assert "logistic_regression" in clf.estimator_ and "1 example" in clf.estimator_  # recorded why
    assert clf.predict_proba(["win cash"]).shape == (1, 2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        QuickClassifier().fit(["a", "b"], ["x", "x"])
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        QuickClassifier().fit(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="no words or characters"):  # nothing to vectorise
        QuickClassifier().fit(["", " "], ["x", "y"])


def test_quick_learns_from_texts_without_word_tokens():
    """One-letter words and symbols give the word analyser nothing: the character n-grams alone, noted."""
    texts = ["a b", "c d", "!! ?", "a a", "b c", "?? !"] * 5
    labels = ["x", "x", "y", "x", "x", "y"] * 5
    clf = QuickClassifier().fit(texts, labels)
    assert "char n-grams only" in clf.estimator_
    assert list(clf.predict(["a c", "! ?"])) == ["x", "y"]


def test_families_due_each_round_and_cold_start(tmp_path):
    from config import Settings
    from worker.loop import Loop
    from storage import Store

    cfg = Settings(instance_path=str(tmp_path), model_families="quick,rnn,embed",
                   model_family_every="rnn:3,embed:5", cold_start_labels=200)
    loop = Loop(cfg, Store(cfg.db_url))
    assert loop.training.families_due(1, 50) == ["embed", "quick", "rnn"]  # cold start: embed first (wins ties)
    assert loop.training.families_due(2, 50) == ["embed", "quick"]  # ... and every round
    assert loop.training.families_due(2, 500) == ["quick"]
    assert loop.training.families_due(4, 500) == ["quick", "rnn"]
    assert loop.training.families_due(6, 500) == ["quick", "embed"]
    loop.settings = cfg.with_(model_families="rnn", model_family_every="rnn:3")
    assert loop.training.families_due(2, 500) == ["rnn"]  # never nothing


def test_a_round_fits_the_tfidf_once_for_quick_and_hybrid(sms, monkeypatch):
    """Inside shared_features the second family reuses the first one's fit on the same texts: the same features,
    so the same predictions as fitted alone; other texts or parameters fit their own; beyond the byte budget
    nothing is kept."""
    import model.quick as quick_module
    from model.hybrid import HybridClassifier
    from model.quick import shared_features

    tr, te = sms
    x, y, x_te = list(tr.text[:600]), list(tr.label[:600]), list(te.text[:200])
    alone_quick = QuickClassifier().fit(x, y).predict_proba(x_te)
    alone_hybrid = HybridClassifier().fit(x, y).predict_proba(x_te)
    fits = []
    real = QuickClassifier._fit_features
    monkeypatch.setattr(QuickClassifier, "_fit_features", lambda self, t: fits.append(len(t)) or real(self, t))
    with shared_features() as memo:
        q = QuickClassifier().fit(x, y)
        h = HybridClassifier().fit(x, y)
        QuickClassifier().fit(x[:300], y[:300])  # other texts: a fit of their own
        QuickClassifier(min_df=2).fit(x, y)  # other parameters: a fit of their own
    assert fits == [600, 300, 600] and memo["hits"] == 1
    assert np.array_equal(q.predict_proba(x_te), alone_quick) and np.array_equal(h.predict_proba(x_te), alone_hybrid)
    monkeypatch.setattr(quick_module, "SHARED_FEATURES_BYTES", 0)
    fits.clear()
    with shared_features() as memo:
        QuickClassifier().fit(x, y)
        HybridClassifier().fit(x, y)
    assert fits == [600, 600] and memo["hits"] == 0
