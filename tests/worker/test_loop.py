"""The worker's loop against the emulator over HTTP: ingest -> train -> pre-label, its idempotence and failures."""
from __future__ import annotations

import csv

import pytest
import requests

from worker import jobs
from annotation_client import PlatformUnavailable
from emulator.tagtog import TagtogEmulator
from annotation_client import EventRejected
from storage import Document, Label, Prediction, Upload

from ..conftest import SMS_CSV, start_loop

N_DOCS = 240


@pytest.fixture(scope="module")
def sms_rows():
    with open(SMS_CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    spam = [r for r in rows if r["label"] == "spam"][:60]
    ham = [r for r in rows if r["label"] == "ham"][: N_DOCS - 60]
    mixed = [x for pair in zip(ham[::3], ham[1::3], ham[2::3], spam) for x in pair]
    return mixed + ham[len(mixed):]


@pytest.fixture
def env(tmp_path, sms_rows):
    yield from make_env(tmp_path, sms_rows)


def make_env(tmp_path, sms_rows):
    """An emulated tagtog spam project of the 240 SMS, served, and a worker Loop on it (a generator: the server
    stops when it is closed)."""
    emu = TagtogEmulator({"alice": "pw"}, seed=3)
    emu.add_project("alice", "spam", [("isSpam", "boolean", ())])
    p = emu.projects[("alice", "spam")]
    truth = {}
    for i, r in enumerate(sms_rows):
        d = emu._create(p, f"sms{i}.txt", "pool", r["text"])
        truth[d.docid] = r["label"] == "spam"
    server, store, loop, pid = start_loop(emu, tmp_path, "spam", min_labels=20, model_epochs=6, warm_min_labels=100,
                                          prelabel_k=5, tagtog_retries=1)
    yield emu, server, store, loop, pid, truth
    server.stop()


def annotate(server, docid, body):
    r = requests.post(f"{server.url}/-emulator/annotate", auth=("alice", "pw"),
                      json={"owner": "alice", "project": "spam", "docid": docid, **body})
    r.raise_for_status()


def deliver(store, loop, pid, docid):
    eid, new = store.record_event(project_id=pid, platform="tagtog", doc_id=docid, member="master", source="GUI",
                                  kind="updated", dedup_key=f"{docid}-{len(store.list_events(limit=10000))}")
    assert new and store.claim_event(eid) is not None
    return loop.ingest.process_event(eid)


def confirm_and_train(env, docids):
    """Confirm ``docids`` with their true labels, import the pool, and train a first version."""
    emu, server, store, loop, pid, truth = env
    for d in docids:
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        deliver(store, loop, pid, d)
    loop.sync.sync_project(pid, force=True)
    return loop.training.train(pid)


def test_loop_learns_prelabels_and_is_idempotent(env):
    emu, server, store, loop, pid, truth = env
    docids = list(truth)
    for d in docids[:200]:
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        assert deliver(store, loop, pid, d).startswith("labelled")
    assert deliver(store, loop, pid, docids[0]) == "unchanged"  # the same confirm again changes nothing
    assert loop.ingest.maybe_request_retrain(pid)

    loop.sync.sync_project(pid, force=True)  # imports the unlabelled pool as candidates
    result = loop.training.train(pid)
    assert result is not None and result.version == 1 and result.mode == "full"
    m = result.metrics
    assert m["n"] >= 30 and m["positive"] == "true"
    # it learned: well above the 75 % of always answering ham, and it finds spam
    assert m["accuracy"] >= 0.85 and m["f1"] >= 0.5, m

    n = loop.prelabels.prelabel(pid, result.version_id)
    assert n == 5
    ups = [e for e in emu.log if e["kind"] == "annotations" and not e.get("gui")]
    assert len(ups) == 5
    for e in ups:
        meta = e["metas"]["m_1"]
        assert meta["confidence"]["who"] == ["ml:prelabel-v1"] and meta["confidence"]["state"] == "pre-added"
        assert 0 < meta["confidence"]["prob"] < 1 and isinstance(meta["value"], bool)
        assert e["anncomplete"] is False and e["docid"] not in docids[:200]  # never a human-labelled doc
    assert loop.prelabels.prelabel(pid, result.version_id) == 0  # a retried job does not upload twice

    # an annotator reviews one suggestion: keeping it counts as accepted
    e = ups[0]
    annotate(server, e["docid"], {"labels": {"isSpam": e["metas"]["m_1"]["value"]}, "confirm": True})
    assert deliver(store, loop, pid, e["docid"]).startswith("labelled")
    with store.session() as s:
        assert s.query(Upload).filter_by(accepted=True).count() == 1
    assert store.project_summary(pid)["prelabels_reviewed"] == {"accepted": 1, "changed": 0}

    # a warm retrain on the grown label set, then its pre-labels
    r2 = loop.training.train(pid)
    assert r2.version == 2 and r2.mode == "warm"
    assert loop.prelabels.prelabel(pid, r2.version_id) == 5


def test_prelabel_never_overwrites_a_human_label(env):
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick")  # plumbing: any family does, quick is fast
    docids = list(truth)
    result = confirm_and_train(env, docids[:40])
    # people label every remaining document on the platform without prelabel hearing of it (no webhook)
    for d in docids[40:]:
        annotate(server, d, {"labels": {"isSpam": truth[d]}})
    assert loop.prelabels.prelabel(pid, result.version_id) == 0
    assert not [e for e in emu.log if e["kind"] == "annotations" and not e.get("gui")]


def test_unknown_label_id_and_wrong_type_fail_the_event_only(env):
    emu, server, store, loop, pid, truth = env
    d1, d2, d3 = list(truth)[:3]
    annotate(server, d1, {"metas": {"m_9": {"value": True, "confidence": {"who": ["user:alice"]}}}, "confirm": True})
    with pytest.raises(EventRejected, match="unknown label id.*m_9"):
        deliver(store, loop, pid, d1)
    annotate(server, d2, {"metas": {"m_1": {"value": "yes", "confidence": {"who": ["user:alice"]}}}, "confirm": True})
    with pytest.raises(EventRejected, match="boolean"):
        deliver(store, loop, pid, d2)
    annotate(server, d3, {"labels": {"isSpam": True}, "confirm": True})
    assert deliver(store, loop, pid, d3) == "labelled true"
    with store.session() as s:
        assert s.query(Label).count() == 1


def test_a_document_stored_by_another_worker_meanwhile_is_read_on_the_second_try(env, monkeypatch):
    """Two workers fetch the same new document at once: the one whose insert loses on the unique key rolls back
    and reads the winner's row (CI saw DetachedInstanceError here: the retry used the rolled-back session's
    project)."""
    from sqlalchemy import select

    emu, server, store, loop, pid, truth = env
    d = list(truth)[0]
    annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
    client = loop.client("tagtog")
    real_get_text = client.get_text
    raced = []

    def get_text_while_another_worker_stores_it(owner, project, docid, **limits):
        text = real_get_text(owner, project, docid, **limits)
        if not raced:  # the other worker's insert lands between our lookup and our flush
            raced.append(docid)
            with store.session() as s:
                s.add(Document(project_id=pid, platform_id=docid, text=text, text_hash="x"))
        return text

    monkeypatch.setattr(client, "get_text", get_text_while_another_worker_stores_it)
    assert deliver(store, loop, pid, d) == f"labelled {str(truth[d]).lower()}"
    assert raced == [d]
    with store.session() as s:
        assert len(s.scalars(select(Document).where(Document.platform_id == d)).all()) == 1
        assert [lab.value for lab in s.query(Label)] == [str(truth[d]).lower()]


def test_unconfirmed_and_ml_labels_are_not_ground_truth(env):
    emu, server, store, loop, pid, truth = env
    d1, d2 = list(truth)[:2]
    annotate(server, d1, {"labels": {"isSpam": True}})  # saved, not confirmed
    assert deliver(store, loop, pid, d1) == "unchanged"
    annotate(server, d2, {"metas": {"m_1": {"value": True, "confidence": {"state": "pre-added", "who": ["ml:x"],
                                                                          "prob": 0.9}}}, "confirm": True})
    assert deliver(store, loop, pid, d2) == "unchanged"
    loop.settings = loop.settings.with_(ground_truth_policy="anncomplete_or_user")
    assert deliver(store, loop, pid, d1) == "labelled true"


def test_deleted_document_retracts_its_label(env):
    emu, server, store, loop, pid, truth = env
    d = list(truth)[0]
    annotate(server, d, {"labels": {"isSpam": True}, "confirm": True})
    deliver(store, loop, pid, d)
    requests.delete(f"{server.url}/-api/documents/v1", params={"owner": "alice", "project": "spam", "ids": d},
                    auth=("alice", "pw"))
    assert deliver(store, loop, pid, d) == "document no longer exists"
    with store.session() as s:
        assert [lab.value for lab in s.query(Label).order_by(Label.id)] == ["true", None]


def test_corpus_samples_are_uploaded_once(env, tmp_path):
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick")  # plumbing: any family does, quick is fast
    docids = list(truth)
    for d in docids[:60]:
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        deliver(store, loop, pid, d)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"URGENT! claim your prize number {i} now, call 0800" for i in range(30)))
    loop.settings = loop.settings.with_(corpus_path=str(corpus))  # no sync: the pool is unknown, only the corpus
    result = loop.training.train(pid)
    assert loop.prelabels.prelabel(pid, result.version_id) == 5
    created = [e for e in emu.log if e["kind"] == "created" and e["filename"].startswith("prelabel-")]
    assert len(created) == 5
    with store.session() as s:
        assert s.query(Document).filter_by(source="corpus").count() == 5
    r2 = loop.training.train(pid)
    loop.prelabels.prelabel(pid, r2.version_id)  # the five already uploaded are platform documents now, not corpus rows
    created2 = [e for e in emu.log if e["kind"] == "created" and e["filename"].startswith("prelabel-")]
    assert len({e["filename"] for e in created2}) == len(created2)


def test_platform_down_requeues_then_succeeds(env):
    emu, server, store, loop, pid, truth = env
    d = list(truth)[0]
    annotate(server, d, {"labels": {"isSpam": True}, "confirm": True})
    jobs._loop = loop
    eid, _ = store.record_event(project_id=pid, platform="tagtog", doc_id=d, member="master", source="GUI",
                                kind="updated", dedup_key="k1")
    emu.faults = [503] * 20
    try:
        jobs.huey.immediate = True
        assert jobs.process_event.call_local(eid) == "retry scheduled"
        ev = store.get_event(eid)
        assert ev["state"] == "queued" and "503" in ev["error"]  # kept, with the reason, never lost
        emu.faults = []
        assert jobs.process_event.call_local(eid) == "labelled true"
        assert store.get_event(eid)["state"] == "done"
    finally:
        jobs.huey.immediate = False
        jobs._loop = None


def test_platform_unavailable_propagates(env):
    emu, server, store, loop, pid, truth = env
    emu.faults = [500] * 20
    eid, _ = store.record_event(project_id=pid, platform="tagtog", doc_id=list(truth)[0], member="master",
                                source="GUI", kind="updated", dedup_key="k2")
    store.claim_event(eid)
    with pytest.raises(PlatformUnavailable):
        loop.ingest.process_event(eid)
    emu.faults = []


def test_prelabel_skips_a_document_whose_save_is_pending(env):
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick")  # plumbing: any family does, quick is fast
    docids = list(truth)
    result = confirm_and_train(env, docids[:40])
    # every unlabelled document has a webhook waiting in the queue: a person is on them
    for d in docids[40:]:
        store.record_event(project_id=pid, platform="tagtog", doc_id=d, member="master", source="GUI",
                           kind="updated", dedup_key=f"pending-{d}")
    assert loop.prelabels.prelabel(pid, result.version_id) == 0


def test_retrain_every_n_labels_and_coalescing(env):
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(retrain_every=3)
    d1, d2, d3, d4 = list(truth)[:4]
    for d in (d1, d2):
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        deliver(store, loop, pid, d)
        assert not loop.ingest.maybe_request_retrain(pid)  # fewer than 3 new labels
    annotate(server, d3, {"labels": {"isSpam": truth[d3]}, "confirm": True})
    deliver(store, loop, pid, d3)
    assert loop.ingest.maybe_request_retrain(pid)  # the third label asks for a retrain: enqueue one
    annotate(server, d4, {"labels": {"isSpam": truth[d4]}, "confirm": True})
    deliver(store, loop, pid, d4)
    assert not loop.ingest.maybe_request_retrain(pid)  # already requested: coalesced into that run, not enqueued again
    assert store.take_retrain_request(pid) and not store.take_retrain_request(pid)


def test_gating_rejects_worse_promotes_better_and_rolls_back(env, monkeypatch):
    import model.factory as factory
    from storage import ModelVersion, Project

    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(warm_min_labels=10_000)  # full fits only: the factory decides the model
    v1 = confirm_and_train(env, list(truth)[:200])
    assert v1.status == "champion" and store.get_version(pid, 1)["reason"] == "first model"
    good = factory.make_classifier

    def crippled(family, **params):  # one gradient step: a deliberately worse model
        return good(family, **{**params, "epochs": 1, "min_steps": 1, "max_epochs": 1})

    monkeypatch.setattr(factory, "make_classifier", crippled)
    v2 = loop.training.train(pid)
    assert v2.status == "rejected" and v2.champion_id == v1.version_id
    d2 = store.get_version(pid, 2)
    assert d2["status"] == "rejected" and ("broken fit" in d2["reason"] or "for every document" in d2["reason"])
    with store.session() as s:
        assert s.get(Project, pid).champion_id == v1.version_id
    monkeypatch.setattr(factory, "make_classifier", good)
    v3 = loop.training.train(pid)
    assert v3.status == "champion" and "no evidence it is worse" in store.get_version(pid, 3)["reason"]
    assert store.get_version(pid, 1)["status"] == "retired"
    # pre-labels come from the champion
    assert loop.prelabels.prelabel(pid, v3.champion_id) == 5
    who = {e["metas"]["m_1"]["confidence"]["who"][0] for e in emu.log if e["kind"] == "annotations" and not e.get("gui")}
    assert who == {"ml:prelabel-v3"}
    # rollback in one call
    store.promote(pid, 1, "rollback by hand")
    with store.session() as s:
        assert s.get(Project, pid).champion_id == v1.version_id
        assert [m.status for m in s.query(ModelVersion).order_by(ModelVersion.version)] == [
            "champion", "rejected", "retired"]
    with pytest.raises(KeyError):
        store.promote(pid, 99, "x")


def test_version_records_every_metric_and_loss_curves(env):
    emu, server, store, loop, pid, truth = env
    confirm_and_train(env, list(truth)[:200])
    v = store.get_version(pid, 1)
    m = v["metrics"]
    # every label trains the model that serves; every label is scored out of fold
    assert m["dataset"] == "cross-validation" and m["n"] == v["n_train"] == 200 and v["n_holdout"] == 0
    assert m["folds"] == 2
    for key in ("accuracy", "mcc", "f1_micro", "f1_macro", "f1_weighted", "per_class", "confusion_matrix",
                "false_predictions"):
        assert key in m
    assert all(set(fp) == {"id", "true", "predicted", "probability"} for fp in m["false_predictions"])
    h = v["history"]
    assert len(h["loss"]) == len(h["val_loss"]) >= 10 and h["loss"][-1] < h["loss"][0]
    assert v["train_seconds"] > 0 and v["n_labels"] == 200


def test_folds_keep_every_document_on_one_side_per_round_and_cover_all():
    from model.selection import assign_folds

    first = [f"a{i:05d}-{i}.txt" for i in range(2000)]
    ys = ["spam" if i % 9 == 0 else "ham" for i in range(2000)]
    folds = assign_folds(first, ys, 5)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    assert all(0.19 < (folds == f).mean() < 0.21 for f in range(5))
    assert (assign_folds(first, ys, 5) == folds).all()  # the same labels give the same folds


def test_scheme_change_during_training_rejects_the_candidate(env, monkeypatch):
    emu, server, store, loop, pid, truth = env
    confirm_and_train(env, list(truth)[:120])
    calls = {"n": 0}
    real = loop.training.training_rows

    def rows_with_a_new_class(project_id, allowed=None):  # the read after training sees a class born meanwhile
        calls["n"] += 1
        rows, max_label = real(project_id, allowed)
        if calls["n"] == 2:
            rows = rows + [("new-doc", "brand new", "maybe", False)]
        return rows, max_label

    monkeypatch.setattr(loop.training, "training_rows", rows_with_a_new_class)
    r = loop.training.train(pid)
    assert r.status == "rejected" and "scheme changed while training" in store.get_version(pid, 2)["reason"]
    assert store.retrain_pending(pid)  # a new run follows


@pytest.fixture
def news_env(tmp_path):
    """An enum label (Category: World|Sports|Business) on AG News texts."""
    import pandas as pd

    from ..conftest import SHARED, start_loop

    df = pd.read_csv(SHARED / "data" / "ag_news" / "ag_news_test.csv", keep_default_na=False)
    df = pd.concat([df[df.label == c].head(40) for c in ("World", "Sports", "Business")])
    emu = TagtogEmulator({"alice": "pw"}, seed=4)
    emu.add_project("alice", "news", [("Category", "enum", ("World", "Sports", "Business"))])
    p = emu.projects[("alice", "news")]
    truth = {emu._create(p, f"n{i}.txt", "pool", t).docid: lab for i, (t, lab) in enumerate(zip(df.text, df.label))}
    server, store, loop, pid = start_loop(emu, tmp_path, "news", min_labels=10, model_epochs=3, prelabel_k=3,
                                          retrain_every=100)
    yield emu, server, store, loop, pid, truth
    server.stop()


def _confirm(server, store, loop, pid, docid, value):
    requests.post(f"{server.url}/-emulator/annotate", auth=("alice", "pw"), json={
        "owner": "alice", "project": "news", "docid": docid, "labels": {"Category": value}, "confirm": True}
    ).raise_for_status()
    return deliver(store, loop, pid, docid)


def test_new_class_forces_a_retrain_and_removed_option_is_not_trained(news_env):
    emu, server, store, loop, pid, truth = news_env
    two = [d for d, lab in truth.items() if lab == "World"][:15] + [d for d, lab in truth.items() if lab == "Sports"][:15]
    for d in two:
        assert _confirm(server, store, loop, pid, d, truth[d]).startswith("labelled"), d
    assert not loop.ingest.maybe_request_retrain(pid) or store.take_retrain_request(pid)  # first model: no champion yet
    r1 = loop.training.train(pid)
    assert r1.status == "champion" and store.get_version(pid, 1)["classes"]["names"] == ["Sports", "World"]
    business = next(d for d, lab in truth.items() if lab == "Business")
    assert _confirm(server, store, loop, pid, business, "Business") == "labelled Business"
    assert loop.ingest.maybe_request_retrain(pid)  # 1 new label < RETRAIN_EVERY=100, but a new class extends the scheme
    for d in [d for d, lab in truth.items() if lab == "Business"][1:12]:
        _confirm(server, store, loop, pid, d, "Business")
    r2 = loop.training.train(pid)
    assert store.get_version(pid, 2)["classes"]["names"] == ["Business", "Sports", "World"]
    reason = store.get_version(pid, 2)["reason"]
    assert "scheme changed" in reason and r2.status == "champion"
    assert "['Sports', 'World'] -> ['Business', 'Sports', 'World']" in reason and "np." not in reason  # plain
    # the platform removes the option Business: it stops being trained on
    emu.projects[("alice", "news")].labels["m_1"].options = ("World", "Sports")
    loop.training.train(pid)
    assert store.get_version(pid, 3)["classes"]["names"] == ["Sports", "World"]


def test_a_class_with_two_labels_is_trained_on(news_env):
    emu, server, store, loop, pid, truth = news_env
    by = {c: [d for d, lab in truth.items() if lab == c] for c in ("World", "Sports", "Business")}
    for d in by["World"][:15] + by["Sports"][:15] + by["Business"][:2]:
        _confirm(server, store, loop, pid, d, truth[d])
    r = loop.training.train(pid)  # each Business document is in a different fold; the served model has both
    v = store.get_version(pid, r.version)
    assert v["classes"]["names"] == ["Business", "Sports", "World"] and "scheme changed" not in v["reason"]
    assert r.status == "champion" and v["n_train"] == 32 and v["n_holdout"] == 0
    assert v["metrics"]["per_class"]["Business"]["support"] == 2


def test_test_folder_is_scored_but_never_trained_or_selected(env):
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick")  # plumbing: any family does, quick is fast
    p = emu.projects[("alice", "spam")]
    docids = list(truth)
    for d in docids[150:200]:  # move 50 documents into pool/test
        p.docs[d].folder = p.folder_path("pool/test")
    loop.settings = loop.settings.with_(test_folder="pool/test")
    r = confirm_and_train(env, docids[:200])
    v = store.get_version(pid, r.version)
    assert v["test_metrics"]["dataset"] == "test" and v["test_metrics"]["n"] == 50
    assert v["n_labels"] == 150  # train + validation exclude the test set
    loop.prelabels.prelabel(pid, r.champion_id)
    ups = {e["docid"] for e in emu.log if e["kind"] == "annotations" and not e.get("gui")}
    assert ups and not ups & set(docids[150:200])


def test_reconcile_recovers_what_webhooks_missed(env):
    """tagtog: confirms whose webhook never arrived, changed values, unconfirmed and deleted documents."""
    emu, server, store, loop, pid, truth = env
    docids = list(truth)
    for d in docids[:3]:
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        deliver(store, loop, pid, d)
    loop.sync.sync_project(pid, force=True)
    for d in docids[3:6]:  # confirmed while prelabel was not listening
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
    r = loop.sync.reconcile(pid)
    assert (r["labels_added"], r["labels_changed"], r["labels_removed"], r["recovered"]) == (3, 0, 0, 3)
    annotate(server, docids[0], {"labels": {"isSpam": truth[docids[0]]}, "confirm": False})  # unconfirmed
    annotate(server, docids[1], {"labels": {"isSpam": not truth[docids[1]]}, "confirm": True})  # changed
    loop.client("tagtog").delete("alice", "spam", docids[2])
    r = loop.sync.reconcile(pid)
    assert (r["labels_added"], r["labels_changed"], r["labels_removed"]) == (0, 1, 2)
    with store.session() as s:
        from storage import current_labels
        now = {d.platform_id: v for d, v, _ in current_labels(s, pid)}
    assert set(now) == set(docids[1:2] + docids[3:6]) and now[docids[1]] == str(not truth[docids[1]]).lower()
    assert loop.sync.reconcile(pid)["recovered"] == 0  # nothing left to take over
    assert store.project_summary(pid)["last_reconcile"]["recovered"] == 0


def test_each_family_competes_and_expensive_ones_run_less_often(env):
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick,rnn", model_family_every="rnn:2", model_ensemble=False)
    for d in list(truth)[:120]:
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        deliver(store, loop, pid, d)
    loop.sync.sync_project(pid, force=True)
    r = loop.training.train(pid)
    vs = store.list_models(pid)
    assert [v["family"] for v in vs] == ["quick", "rnn"]  # round 1: every family
    champ = [v for v in vs if v["status"] == "champion"]
    loser = [v for v in vs if v["status"] == "rejected"]
    assert len(champ) == 1 and len(loser) == 1 and r.version == champ[0]["version"]
    assert champ[0]["f1_macro"] >= loser[0]["f1_macro"] - 0.01 and "in the same round" in loser[0]["reason"]
    assert champ[0]["reason"].startswith("best of quick, rnn this round")
    assert loop.prelabels.prelabel(pid, r.champion_id) == 5  # pre-labels come from whichever family won
    loop.training.train(pid)
    assert [v["family"] for v in store.list_models(pid)][2:] == ["quick"]  # round 2: rnn is not due
    loop.training.train(pid)
    assert [v["family"] for v in store.list_models(pid)][3:] == ["quick", "rnn"]
    with pytest.raises(ValueError, match="MODEL_FAMILIES"):
        from config import Settings
        Settings.from_env({"MODEL_FAMILIES": "quick,bogus"})


def test_bert_is_deferred_to_its_own_queue(env):
    """The main retrain leaves bert to the bert queue's worker (jobs.train_family), which trains and gates it."""
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick,bert")
    for d in list(truth)[:60]:
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        deliver(store, loop, pid, d)
    loop.sync.sync_project(pid, force=True)
    r = loop.training.train(pid, defer=jobs.OWN_QUEUE)
    assert r.deferred == ("bert",) and [v["family"] for v in store.list_models(pid)] == ["quick"]
    jobs.configure(loop.settings, store, lambda _: loop.client("tagtog"))
    out = jobs.train_family.call_local(pid, "quick")  # the same task, with a family that trains in a second
    assert out.startswith("v2 ") and [v["family"] for v in store.list_models(pid)] == ["quick", "quick"]
    with store.session() as s:
        from storage import Project
        assert s.get(Project, pid).rounds == 1  # a family trained on its own queue is not a round


def test_a_family_that_cannot_train_leaves_the_others(env, monkeypatch):
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick,rnn")
    for d in list(truth)[:60]:
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        deliver(store, loop, pid, d)
    from model.quick import QuickClassifier

    def broken(self, *a, **k):
        raise ValueError("the texts have no words or characters to learn from")
    monkeypatch.setattr(QuickClassifier, "fit", broken)
    r = loop.training.train(pid)
    v = store.get_version(pid, r.version)
    assert v["family"] == "rnn" and v["status"] == "champion"
    assert "quick could not train (the texts have no words" in v["reason"]


def test_default_hybrid_without_its_packages_leaves_quick(env, monkeypatch):
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="hybrid,quick")  # the default
    for d in list(truth)[:60]:
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        deliver(store, loop, pid, d)
    from model import embed, hybrid

    def missing(*a, **k):
        raise ModuleNotFoundError("No module named 'keras_hub'")
    monkeypatch.setattr(embed, "encoder_for", missing)
    monkeypatch.setattr(hybrid, "encoder_for", missing)
    r = loop.training.train(pid)
    v = store.get_version(pid, r.version)
    assert v["family"] == "quick" and v["status"] == "champion"
    assert "hybrid could not train (No module named 'keras_hub'; install requirements-bert.txt)" in v["reason"]


def test_rounds_record_the_champion_score_for_the_plateau_rule(env):
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick")
    for d in list(truth)[:60]:
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        deliver(store, loop, pid, d)
    loop.training.train(pid)
    loop.training.train(pid)
    from storage import ModelVersion, Project

    with store.session() as s:
        p = s.get(Project, pid)
        champion = s.get(ModelVersion, p.champion_id)
        assert p.schedule["trained"] == {"quick": 2} and len(p.schedule["scores"]) == 2
        assert p.schedule["scores"][-1] == pytest.approx(champion.metrics["f1_macro"])


def test_every_step_records_its_kappa_on_the_stop_set(env, monkeypatch):
    """The stop sign compares models STOP_GROWTH apart in labels (models a label apart always agree, which lit the
    sign at STOP_MIN_LABELS with RETRAIN_EVERY=1), and counts rejected candidates too: each step's chosen model
    predicts the same stop set, and Cohen's kappa with the last step's decisions is recorded."""
    from model.selection import Decision

    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick", stop_set=100)  # plumbing: quick is fast
    assert loop.settings.stop_growth == 1.3
    confirm_and_train(env, list(truth)[:60])
    first = store.project_summary(pid)["stability"]
    assert [(h["version"], h["kappa"], h["compared"], h["labels"]) for h in first] == [(1, None, 0, 60)]
    loop.training.train(pid)  # the same labels: no step
    assert len(store.project_summary(pid)["stability"]) == 1

    def label(docs):
        for d in docs:
            annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
            deliver(store, loop, pid, d)

    label(list(truth)[60:77])  # 77 labels < 1.3 x 60: no step
    loop.training.train(pid)
    assert len(store.project_summary(pid)["stability"]) == 1
    label(list(truth)[77:78])  # 78 = 1.3 x 60: a step, though its candidate is rejected
    monkeypatch.setattr("model.selection.gate", lambda **kw: Decision("rejected", "test: the champion is kept"))
    r = loop.training.train(pid)
    last = store.project_summary(pid)["stability"][-1]
    assert r.status == "rejected" and last["status"] == "rejected" and last["version"] == r.version
    assert last["labels"] == 78 and last["compared"] == 100 and 0 <= last["kappa"] <= 1
    monkeypatch.undo()
    label(list(truth)[78:102])  # 102 labels = 1.31 x 78
    loop.training.train(pid)
    history = store.project_summary(pid)["stability"]
    assert [h["labels"] for h in history] == [60, 78, 102] and history[-1]["kappa"] is not None


def test_random_documents_feed_the_estimate_and_old_versions_are_pruned(env, monkeypatch):
    """AUDIT_SHARE of a batch is drawn at random and marked; once people label them, the version's estimate rests
    on them (with an interval); rejected and retired versions beyond KEEP_* lose their files, not their rows."""
    from model.selection import Decision
    from storage import Document, Upload

    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick", audit_share=1.0, keep_rejected=1, keep_retired=1,
                                        stop_set=150)
    r = confirm_and_train(env, list(truth)[:60])
    est = store.get_version(pid, 1)["metrics"]["estimate"]
    assert est["n_random"] == 0 and est["n_pool"] > 50 and est["metrics"]["f1_macro"]["low"] is None
    assert est["n_labels"] == 60 and "out-of-fold predictions of the 60 labelled documents" in est["method"]
    assert "not yet checked by random documents people labelled" in est["method"]
    assert loop.prelabels.prelabel(pid, r.champion_id) == 5
    with store.session() as s:
        audit = [d.platform_id for d in s.query(Document).filter_by(audit=True)]
        tags = {u.strategy for u in s.query(Upload)}
    assert len(audit) == 5 and tags == {"audit:random"}  # AUDIT_SHARE=1: the whole batch is random
    for d in audit:
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        deliver(store, loop, pid, d)
    r2 = loop.training.train(pid)
    est = store.get_version(pid, r2.version)["metrics"]["estimate"]
    m = est["metrics"]["f1_macro"]
    assert est["n_random"] == 5 and "corrected by 5 random documents" in est["method"]
    assert m["low"] is None and "no interval until 30" in est["method"]  # too few for a bootstrap
    # pruning: three rejected candidates, the newest keeps its files; v1, the one retired version, keeps its own
    monkeypatch.setattr("model.selection.gate", lambda **kw: Decision("rejected", "test: kept the champion"))
    for _ in range(3):
        assert loop.training.train(pid).status == "rejected"
    vs = {v["version"]: v for v in store.list_models(pid)}
    assert [v for v in vs if vs[v]["status"] == "rejected" and vs[v]["path"]] == [5]
    assert all("[files pruned: beyond the newest 1 rejected]" in vs[v]["reason"] for v in (3, 4))
    folders = {f.name for f in loop.settings.models_path.glob("*/v*")}
    assert {"v1", "v2", "v5"} <= folders and not {"v3", "v4"} & folders  # the files are gone
    assert vs[1]["status"] == "retired" and vs[1]["path"] and vs[2]["status"] == "champion"
    assert vs[3]["f1_macro"] is not None  # the row keeps its metrics
    # AUDIT_SHARE 0.1 of a batch of 10: one random document; none in a random batch (random already)
    loop.settings = loop.settings.with_(audit_share=0.1)
    assert len(loop.prelabels.draw_audit(pid, 9, 500, "margin", 10)) == 1
    assert loop.prelabels.draw_audit(pid, 9, 500, "random", 10) == []


def test_a_queueing_platform_gets_every_pool_suggestion_then_only_the_changed_ones(env, monkeypatch):
    """Where the platform queues the whole pool (Label Studio), every unlabelled document gets the champion's
    suggestion; the next champion rewrites exactly those whose label changed or whose probability moved by
    SCORE_STEP or more; random documents for the estimate are passed as such."""
    from worker.loop.prelabel import POOL_TAG, SCORE_STEP

    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick", audit_share=0.5)
    platform = loop.project(pid)[0]
    calls = []

    def upload_queue(ref, scheme, suggestions, *, mode, audit, still_wanted, uploaded):
        calls.append(({s.doc_id: (s.value, s.prob) for s in suggestions}, set(audit), mode))
        uploaded([s for s in suggestions if still_wanted(s.doc_id)])
        return len(suggestions)

    monkeypatch.setattr(type(platform), "queues_pool", True)
    monkeypatch.setattr(platform, "upload_queue", upload_queue)
    docids = list(truth)
    r1 = confirm_and_train(env, docids[:60])
    pool = set(docids[60:])
    assert loop.prelabels.prelabel(pid, r1.champion_id) == len(pool)
    first, audit, mode = calls[-1]
    assert set(first) == pool and mode == "learn" and 0 < len(audit) <= 5 and audit <= pool
    with store.session() as s:
        tags = {u.strategy for u in s.query(Upload)}
    assert POOL_TAG in tags and "audit:random" in tags
    assert loop.prelabels.prelabel(pid, r1.champion_id) == 0  # a retried job writes nothing twice
    for d in docids[60:70]:
        annotate(server, d, {"labels": {"isSpam": truth[d]}, "confirm": True})
        deliver(store, loop, pid, d)
    r2 = loop.training.train(pid)
    assert r2.status == "champion"
    loop.prelabels.prelabel(pid, r2.champion_id)
    second, audit2, _ = calls[-1]
    clf = loop.classifier(pid, r2.champion_id)
    with store.session() as s:
        texts = {d.platform_id: d.text for d in s.query(Document) if d.platform_id in pool - set(docids[60:70])}
    now = {k: loop.prelabels.suggestion(clf, k, row) for k, row in zip(texts, clf.predict_proba(list(texts.values())))}
    changed = {k for k, sug in now.items() if sug.value != first[k][0] or abs(sug.prob - first[k][1]) >= SCORE_STEP}
    assert audit2 <= set(second)  # newly drawn random documents are written again, as such
    assert set(second) - audit2 == changed - audit2 and len(second) < len(texts)  # the rest keep what they show


def test_prelabel_reads_the_scored_pool_back_instead_of_predicting_it_again(env):
    """A round scores the pool once (score_pool stores the champion's probabilities); the pre-label job of the same
    round reads them back and predicts only what was not scored."""
    emu, server, store, loop, pid, truth = env
    loop.settings = loop.settings.with_(model_families="quick")
    r = confirm_and_train(env, list(truth)[:60])
    assert loop.prelabels.score_pool(pid, r.champion_id) == len(truth) - 60
    clf = loop.classifier(pid, r.champion_id)
    predicted = []
    real = clf.predict_proba
    clf.predict_proba = lambda texts: predicted.append(len(texts)) or real(texts)
    try:
        assert loop.prelabels.prelabel(pid, r.champion_id) == 5
        assert predicted == []  # every pool document was read back
        with store.session() as s:  # a document the scoring did not see is predicted
            s.query(Prediction).filter(Prediction.document_id == s.query(Prediction.document_id).limit(1)
                                       .scalar_subquery()).delete(synchronize_session=False)
        loop.prelabels.prelabel(pid, r.champion_id)
        assert predicted == [1]
    finally:
        del clf.predict_proba
