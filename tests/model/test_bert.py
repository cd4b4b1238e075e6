"""The bert family (MiniLM-L6 fine-tuned with keras-hub on TensorFlow): a tiny subset and one epoch, on CPU."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from model.bert import BertClassifier
from model.factory import load_classifier
from model.factory import save_version

from ..conftest import SMS_CSV

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted():
    df = pd.read_csv(SMS_CSV, keep_default_na=False)
    tr, te = train_test_split(df, test_size=0.2, stratify=df.label, random_state=42)
    small, te = tr.groupby("label").head(150), te.groupby("label").head(100)
    reports = []
    clf = BertClassifier(epochs=1, learning_rate=1e-4, batch_size=16, max_length=64).on_progress(reports.append)
    clf.fit(list(small.text), list(small.label), validation=(list(te.text[:40]), list(te.label[:40])))
    return clf, te, reports


def test_bert_learns_in_one_epoch(fitted):
    clf, te, reports = fitted
    assert f1_score(te.label, clf.predict(list(te.text)), pos_label="spam") >= 0.85  # measured 0.975
    assert reports and reports[0]["epoch"] == 1 and "loss" in reports[0]  # progress reached the caller
    assert set(clf.history_) == {"loss", "val_loss"} and len(clf.history_["loss"]) == 1
    p = clf.predict_proba(list(te.text[:5]))
    assert p.shape == (5, 2) and list(clf.classes_) == ["ham", "spam"] and np.allclose(p.sum(axis=1), 1)
    assert clf.predict_proba(["", "x " * 2000]).shape == (2, 2)  # empty and over-long (truncated) texts


def test_bert_save_load_identical(fitted, tmp_path):
    clf, te, _ = fitted
    folder = save_version(clf, tmp_path, "v1", {"family": "bert"})
    assert (folder / "model.h5").stat().st_size < 120e6  # no optimizer state in the file
    assert (folder / "vocab.txt").exists()
    back = load_classifier(folder)
    assert np.allclose(back.predict_proba(list(te.text[:30])), clf.predict_proba(list(te.text[:30])), atol=1e-5)


def test_bert_multilabel_shapes_and_cancel():
    texts = ["i love you", "haha so funny", "thank you so much", "love it, thanks"] * 4
    labels = [("love",), ("fun",), ("thanks",), ("love", "thanks")] * 4
    clf = BertClassifier(epochs=1, batch_size=8, max_length=32).fit(texts, labels)
    assert clf.multilabel_ and clf.predict_proba(["thanks"]).shape == (1, 3)
    with pytest.raises(InterruptedError, match="cancelled"):
        BertClassifier(epochs=1, batch_size=4).on_progress(should_stop=lambda: True).fit(texts, [lab[0] for lab in labels])
