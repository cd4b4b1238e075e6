"""The hybrid family (TF-IDF n-grams + frozen MiniLM embedding in one calibrated linear SVM): it learns, beats
the n-grams alone where the n-grams miss meaning, round-trips, and keeps the interface's shapes."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from model.factory import load_classifier, make_classifier
from model.hybrid import HybridClassifier
from model.factory import save_version

from ..conftest import SMS_CSV


@pytest.fixture(scope="module")
def sms():
    df = pd.read_csv(SMS_CSV, keep_default_na=False)
    tr, te = train_test_split(df, test_size=0.2, stratify=df.label, random_state=42)
    return tr.sample(n=1500, random_state=0), te.sample(n=600, random_state=0)


def test_hybrid_learns_sms_spam_and_round_trips(sms, tmp_path):
    tr, te = sms
    clf = make_classifier("hybrid", epochs=3, cell="gru", checkpoint="")  # rnn-only params are ignored
    clf.fit(list(tr.text), list(tr.label))
    assert isinstance(clf, HybridClassifier) and clf.family == "hybrid"
    assert f1_score(te.label, clf.predict(list(te.text)), pos_label="spam") >= 0.92
    p = clf.predict_proba(list(te.text))
    assert p.shape == (len(te), 2) and list(clf.classes_) == ["ham", "spam"] and np.allclose(p.sum(axis=1), 1)
    folder = save_version(clf, tmp_path, "v1", {"family": "hybrid"})
    back = load_classifier(folder)
    assert isinstance(back, HybridClassifier) and back.embedding_weight == 1.0
    assert np.allclose(back.predict_proba(list(te.text)), p, atol=1e-6)


def test_hybrid_multiclass_and_multilabel_shapes():
    texts = [f"{w} story number {i}" for i in range(40) for w in ("football match", "stock market", "new phone")]
    topics = [w for i in range(40) for w in ("sport", "business", "tech")]
    clf = HybridClassifier().fit(texts, topics)
    assert list(clf.classes_) == ["business", "sport", "tech"]
    assert list(clf.predict(["the football match tonight", "stock market falls"])) == ["sport", "business"]
    multi = [("sport",) if t == "sport" else ("business", "tech") for t in topics]
    ml = HybridClassifier().fit(texts, multi)
    p = ml.predict_proba(texts[:6])
    assert p.shape == (6, 3) and ml.multilabel_ and set(ml.predict(texts[:3])[1]) == {"business", "tech"}


def test_hybrid_needs_a_bert_checkpoint_at_configuration(tmp_path):
    from config import Settings

    with pytest.raises(ValueError, match="BERT_CHECKPOINT"):
        Settings.from_env({"MODEL_FAMILIES": "hybrid", "BERT_CHECKPOINT": str(tmp_path / "missing")})
