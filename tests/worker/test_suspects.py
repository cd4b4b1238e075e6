"""Labels most likely wrong (model/suspects.py, issue 32): confident learning on the round's out-of-fold
probabilities finds planted errors; the list is stored by the worker and only read by the web process (API,
dashboard, /metrics); a person who re-confirms a label (saves it again, or dismisses it) takes it off for good."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from config import Settings
from model.suspects import MIN_PER_CLASS, find
from storage import Document, Label, Store, text_hash

from ..conftest import SMS_CSV


def test_confident_learning_ranks_planted_errors_first():
    rng = np.random.default_rng(0)
    n, classes = 400, ["a", "b", "c"]
    truth = rng.integers(0, 3, n)
    proba = np.full((n, 3), 0.1) + rng.normal(0, 0.01, (n, 3))  # a model about as sure everywhere
    proba[np.arange(n), truth] += 0.7
    labels = [classes[k] for k in truth]
    planted = [5, 17, 80, 123, 300]
    for i in planted:
        labels[i] = classes[(truth[i] + 1) % 3]
        proba[i] = 0.025
        proba[i, truth[i]] = 0.95  # the model is sure of the truth there
    found = find(proba, labels, classes)
    assert sorted(s.row for s in found[:len(planted)]) == planted  # the planted ones, first
    top = found[0]
    assert top.given == labels[top.row] and top.predicted == classes[truth[top.row]] and top.probability > 0.5
    assert [s.quality for s in found] == sorted(s.quality for s in found)  # most likely wrong first
    # too few labels of a class to know its threshold: no list rather than a guess
    assert find(proba[:10], labels[:10], classes) == [] and MIN_PER_CLASS == 5


def test_multilabel_suspects():
    rng = np.random.default_rng(1)
    n, classes = 300, ["x", "y", "z"]
    truth = rng.random((n, 3)) < 0.4
    proba = np.where(truth, 0.85, 0.1) + rng.normal(0, 0.03, (n, 3))
    labels = [tuple(c for c, t in zip(classes, row) if t) for row in truth]
    labels[7] = tuple(c for c, t in zip(classes, ~truth[7]) if t)  # every label of row 7 flipped
    found = find(proba, labels, classes, multilabel=True, thresholds=[0.5] * 3)
    assert found and found[0].row == 7 and set(found[0].predicted) == set(labels[7]) ^ set(classes)


@pytest.fixture
def project(tmp_path):
    """A local project of 600 SMS with 24 labels flipped (4 %), trained once with the quick family."""
    from worker.loop import Loop

    df = pd.read_csv(SMS_CSV, keep_default_na=False).sample(n=600, random_state=7).reset_index(drop=True)
    given = list(df.label)
    flipped = list(range(0, 600, 25))
    for i in flipped:
        given[i] = "ham" if given[i] == "spam" else "spam"
    settings = Settings(instance_path=str(tmp_path), model_families="quick", model_ensemble=False, cv_folds=5,
                        min_labels=10)
    store = Store(settings.db_url)
    store.create_all()
    pid = store.ensure_project("local", "local", "sms")
    with store.session() as s:
        docs = [Document(project_id=pid, platform_id=f"m{i}", filename=f"m{i}", text=t, text_hash=text_hash(t),
                         source="corpus") for i, t in enumerate(df.text)]
        s.add_all(docs)
        s.flush()
        ids = [d.id for d in docs]
        s.add_all([Label(project_id=pid, document_id=d, who="person", value=json.dumps(y))
                   for d, y in zip(ids, given)])
    loop = Loop(settings, store)
    assert loop.training.train(pid) is not None
    return settings, store, loop, pid, ids, given, flipped


def test_the_round_lists_planted_errors_and_a_reconfirmed_label_leaves_for_good(project):
    from app import create_app

    settings, store, loop, pid, ids, given, flipped = project
    total, items = store.suspects(pid, 1000)
    assert total == len(items) > 0
    top = [int(it["platform_id"][1:]) for it in items[:len(flipped)]]
    assert len(set(top) & set(flipped)) >= 0.6 * len(flipped), (top, flipped)  # most planted errors first
    first = items[0]
    assert first["label"] != first["predicted"] and 0.5 < first["probability"] <= 1 and first["rank"] == 1

    # the web process only reads the stored list (API, dashboard, /metrics)
    app = create_app({"instance_path": settings.instance_path, "admin_token": "adm-0123456789abcdef",
                      "metrics_token": ""})
    c = app.test_client()
    r = c.get(f"/api/v1/projects/{pid}/suspect-labels?limit=5")
    assert r.status_code == 200 and r.json["count"] == total and len(r.json["suspects"]) == 5
    assert r.json["suspects"][0]["document_id"] == first["document_id"] and r.json["suspects"][0]["url"] is None
    assert c.get(f"/api/v1/projects/{pid}/suspect-labels?limit=0").status_code == 400
    page = c.get(f"/dashboard/projects/{pid}").get_data(as_text=True)
    assert f"<strong>{total}</strong> labels likely wrong" in page
    assert f'prelabel_suspect_labels{{project="local-local-sms"}} {float(total)}' in c.get("/metrics").get_data(
        as_text=True)

    # dismissed through the API (admin): off the list now and after the next round
    doc = first["document_id"]
    assert c.post(f"/api/v1/projects/{pid}/suspect-labels/{doc}/dismiss").status_code == 401
    admin = {"Authorization": "Bearer adm-0123456789abcdef"}
    assert c.post(f"/api/v1/projects/{pid}/suspect-labels/{doc}/dismiss", headers=admin).status_code == 200
    assert c.post(f"/api/v1/projects/{pid}/suspect-labels/{doc}/dismiss", headers=admin).status_code == 404
    # re-confirmed on the platform: the person saves the same label again (a newer label row, same value)
    second = items[1]["document_id"]
    with store.session() as s:
        s.add(Label(project_id=pid, document_id=second, who="person", value=json.dumps(items[1]["label"])))
    store.request_retrain(pid)
    assert loop.training.train(pid) is not None
    _, after = store.suspects(pid, 1000)
    listed = {it["document_id"] for it in after}
    assert doc not in listed and second not in listed and len(after) >= len(items) - 2 - 3


def test_a_failure_of_the_list_never_costs_the_round(project, monkeypatch, caplog):
    settings, store, loop, pid, *_ = project
    import model.suspects

    monkeypatch.setattr(model.suspects, "find", lambda *a, **k: 1 / 0)
    store.request_retrain(pid)
    with caplog.at_level("WARNING"):
        result = loop.training.train(pid)
    assert result is not None and result.version == 2
    assert "the list of likely wrong labels failed" in caplog.text
