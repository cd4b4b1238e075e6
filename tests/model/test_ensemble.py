"""Ensembles of a round's candidates, per-label thresholds of multilabel models, and the plateau schedule."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

import model.factory as factory
from model.base import TextClassifier
from model.ensemble import EnsembleClassifier, best_subset
from model.factory import load_classifier, make_classifier
from model.quick import QuickClassifier
from model.factory import save_version

from ..conftest import SMS_CSV


@pytest.fixture(scope="module")
def sms():
    df = pd.read_csv(SMS_CSV, keep_default_na=False)
    return train_test_split(df, test_size=0.2, stratify=df.label, random_state=42)


def test_ensemble_of_quick_and_rnn_learns_and_round_trips(sms, tmp_path):
    tr, te = sms
    x, y = list(tr.text[:1500]), list(tr.label[:1500])
    members = [make_classifier("quick").fit(x, y), make_classifier("rnn", epochs=4, random_state=42).fit(x, y)]
    ens = EnsembleClassifier.of(members)
    p = ens.predict_proba(list(te.text))
    assert p.shape == (len(te), 2) and list(ens.classes_) == ["ham", "spam"]
    assert np.allclose(p, (members[0].predict_proba(list(te.text)) + members[1].predict_proba(list(te.text))) / 2)
    assert f1_score(te.label, ens.predict(list(te.text)), pos_label="spam") >= 0.85
    folder = save_version(ens, tmp_path, "v1", {"family": "ensemble"})
    assert sorted(q.name for q in (folder / "members").iterdir()) == ["0-quick", "1-rnn"]
    back = load_classifier(folder)
    assert isinstance(back, EnsembleClassifier) and back.families == ("quick", "rnn")
    assert np.allclose(back.predict_proba(list(te.text[:300])), ens.predict_proba(list(te.text[:300])), atol=1e-6)


def test_ensemble_rejects_members_that_disagree(sms):
    tr, _ = sms
    a = QuickClassifier().fit(list(tr.text[:300]), list(tr.label[:300]))
    b = QuickClassifier().fit(["red cat", "blue dog", "green fox"], ["x", "y", "z"])
    with pytest.raises(ValueError, match="disagree on the classes"):
        EnsembleClassifier.of([a, b])
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleClassifier.of([a])


def test_ensemble_fits_its_own_members_for_cross_validation(sms):
    tr, te = sms
    ens = make_classifier("ensemble", families=["quick", "quick"], C=0.5, epochs=3)  # C reaches the members
    ens.fit(list(tr.text[:600]), list(tr.label[:600]))
    assert [m.C for m in ens.members_] == [0.5, 0.5]
    assert f1_score(te.label, ens.predict(list(te.text)), pos_label="spam") >= 0.8


def test_best_subset_tries_every_subset_and_prefers_the_smaller_on_ties():
    truth = np.array([0, 1, 0, 1])
    a = np.array([[0.9, 0.1], [0.6, 0.4], [0.9, 0.1], [0.6, 0.4]])  # right on 0, wrong on 1
    b = np.array([[0.4, 0.6], [0.1, 0.9], [0.4, 0.6], [0.1, 0.9]])  # right on 1, wrong on 0
    c = np.array([[0.5, 0.5]] * 4)

    def acc(p: np.ndarray, subset: tuple[int, ...]) -> float:
        return float(np.mean(p.argmax(axis=1) == truth))
    assert best_subset([a, b, c], acc) == ((0, 1), 1.0)


def test_multilabel_thresholds_are_tuned_saved_and_used(tmp_path):
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta"]
    texts, labels = [], []
    for i in range(400):
        tags = [w for w in words[:3] if rng.random() < 0.4] + (["delta"] if i % 25 == 0 else [])
        texts.append(" ".join(tags + [f"w{rng.integers(50)}" for _ in range(5)]))
        labels.append(tuple(tags) or ("none",))
    clf = QuickClassifier().fit(texts[:300], labels[:300])
    assert np.allclose(clf.thresholds(), 0.5)
    clf.tune_thresholds(texts[300:], labels[300:])
    th = dict(zip(clf.classes_, clf.thresholds()))
    assert all(0.05 <= t <= 0.95 for t in th.values()) and set(th) == {"alpha", "beta", "delta", "gamma", "none"}
    pred = clf.predict(texts[300:])
    assert sum("delta" in p for p in pred) >= 3  # the rare label is predicted at its own cut-off
    folder = save_version(clf, tmp_path, "v1", {"family": "quick"})
    assert json.loads((folder / "meta.json").read_text())["thresholds"] == [float(t) for t in clf.thresholds()]
    back = load_classifier(folder)
    assert np.array_equal(back.thresholds(), clf.thresholds()) and back.predict(texts[300:]) == pred
    proba = clf.predict_proba(texts[300:302])
    assert clf.decide(proba) == [tuple(c for c, p, t in zip(clf.classes_, row, clf.thresholds()) if p >= t)
                                 for row in proba]


# -- the pipeline: an ensemble candidate is kept only when it beats each single one ---------------------------

class _Half(TextClassifier):
    """A stub family that is sure on half of the documents (digit parity) and mildly wrong on the other half."""

    family, parity = "quick", 0

    def __init__(self) -> None:
        pass

    def fit(self, texts, labels, *, validation=None):
        self._set_classes(texts, labels)
        self.history_ = {}
        return self

    def predict_proba(self, texts):
        out = []
        for t in texts:
            spam, n = t.startswith("spam"), int(t.split()[-1])
            sure = n % 2 == self.parity
            p_spam = (0.95 if spam else 0.05) if sure else (0.45 if spam else 0.55)
            out.append([1 - p_spam, p_spam])
        return np.array(out)

    def save(self, folder: Path) -> None:
        (Path(folder) / "stub.json").write_text(json.dumps(list(self.classes_)))

    @classmethod
    def load(cls, folder: Path) -> "_Half":
        clf = cls()
        clf.classes_ = np.array(json.loads((Path(folder) / "stub.json").read_text()))
        clf.multilabel_, clf.history_ = False, {}
        return clf


class _Odd(_Half):
    family, parity = "rnn", 1


@pytest.fixture()
def stub_families(monkeypatch):
    real = factory._families

    def families():
        return {**real(), "quick": _Half, "rnn": _Odd}
    monkeypatch.setattr(factory, "_families", families)


def _stub_loop(tmp_path: Path, **overrides):
    from config import Settings
    from worker.loop import Loop
    from storage import Store

    cfg = Settings(instance_path=str(tmp_path), model_families="quick,rnn", model_family_every="",
                   cv_folds=3, min_labels=10, tagtog_retries=0, **overrides)
    store = Store(cfg.db_url)
    store.create_all()
    return cfg, store, Loop(cfg, store)


def _label(store, pid: int, n: int) -> None:
    from storage import Document, Label, text_hash

    with store.session() as s:
        for i in range(n):
            spam = i % 3 == 0
            text = f"{'spam' if spam else 'ham'} text {i}"
            d = Document(project_id=pid, platform_id=f"d{i}", text=text, text_hash=text_hash(text))
            s.add(d)
            s.flush()
            s.add(Label(document_id=d.id, project_id=pid, value=json.dumps("spam" if spam else "ham"), who="alice"))


def test_pipeline_keeps_an_ensemble_that_beats_every_family(tmp_path, stub_families):
    cfg, store, loop = _stub_loop(tmp_path)
    pid = store.ensure_project("tagtog", "alice", "spam")
    _label(store, pid, 120)
    r = loop.training.train(pid)
    vs = store.list_models(pid)
    assert [v["family"] for v in vs] == ["quick", "rnn", "ensemble"]
    champ = store.get_version(pid, r.version)
    assert champ["family"] == "ensemble" and champ["status"] == "champion" and champ["f1_macro"] == 1.0
    assert champ["reason"].startswith("best of quick, rnn, ensemble this round")
    assert all(v["status"] == "rejected" and "in the same round" in v["reason"] for v in vs[:2])
    back = loop.classifier(pid, r.champion_id)
    assert back.predict(["spam x 3", "ham x 4"]).tolist() == ["spam", "ham"]
    loop._models.clear()
    from model.calibration import CalibratedClassifier, uncalibrated

    loaded = loop.classifier(pid, r.champion_id)  # loads from its folder, with its calibration and its members'
    assert isinstance(loaded, CalibratedClassifier) and isinstance(uncalibrated(loaded), EnsembleClassifier)
    assert loaded.calibration_["kind"] == "temperature"
    assert all(isinstance(m, CalibratedClassifier) for m in uncalibrated(loaded).members_)
    assert np.allclose(loaded.predict_proba(["spam x 3"]), back.predict_proba(["spam x 3"]))

    cfg, store, loop = _stub_loop(tmp_path / "off", model_ensemble=False)
    pid = store.ensure_project("tagtog", "alice", "spam")
    _label(store, pid, 120)
    loop.training.train(pid)
    assert [v["family"] for v in store.list_models(pid)] == ["quick", "rnn"]


def test_pipeline_notes_an_ensemble_that_is_not_better(tmp_path, monkeypatch, stub_families):
    monkeypatch.setattr(_Odd, "parity", 0)  # both families right on the same half: averaging gains nothing
    cfg, store, loop = _stub_loop(tmp_path)
    pid = store.ensure_project("tagtog", "alice", "spam")
    _label(store, pid, 120)
    r = loop.training.train(pid)
    assert [v["family"] for v in store.list_models(pid)] == ["quick", "rnn"]
    assert "ensemble quick+rnn cross-validated f1_macro" in store.get_version(pid, r.version)["reason"]


# -- plateau scheduling ------------------------------------------------------------------------------------------

def test_a_plateau_family_trains_only_when_the_champion_stops_improving(tmp_path):
    from config import Settings
    from worker.loop import Loop
    from storage import Store

    cfg = Settings(instance_path=str(tmp_path), model_families="quick,bert", model_family_every="bert:plateau",
                   plateau_rounds=3, plateau_delta=0.01)
    loop = Loop(cfg, Store(cfg.db_url))
    assert cfg.plateau_families == ("bert",) and cfg.family_every == {}
    rising = {"scores": [0.70, 0.75, 0.80, 0.85], "trained": {"bert": 1}}
    flat = {"scores": [0.70, 0.80, 0.805, 0.806, 0.807], "trained": {"bert": 1}}
    assert loop.training.families_due(1, 500, {}) == ["quick", "bert"]  # the first round trains every family
    assert loop.training.families_due(5, 500, rising) == ["quick"]
    assert loop.training.plateaued(flat) and not loop.training.plateaued(rising) and not loop.training.plateaued({"scores": [0.8] * 3})
    assert loop.training.families_due(6, 500, flat) == ["quick", "bert"]
    assert loop.training.families_due(6, 500, {**flat, "trained": {"bert": 5}}) == ["quick"]  # at most once per 3 rounds
    for bad in ("bert:sometimes", "bogus:plateau"):
        with pytest.raises(ValueError, match="MODEL_FAMILY_EVERY"):
            Settings.from_env({"MODEL_FAMILY_EVERY": bad})


def test_pick_best_prefers_the_first_listed_within_the_margin():
    from model.evaluate import pick_best

    assert pick_best([0.950, 0.955, 0.990], 0.01) == 2  # clearly better
    assert pick_best([0.950, 0.955, 0.958], 0.01) == 0  # within the noise: listed first
    assert pick_best([None, 0.5], 0.0) == 1 and pick_best([0.7, 0.7], 0.0) == 0
