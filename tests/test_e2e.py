"""End to end, as separate processes over HTTP: tagtog emulator <-> prelabel web (gunicorn) + worker (Huey).

The emulator answers the settings export with 403 (a member without admin rights): prelabel knows only the legend,
and must still upload boolean pre-labels as JSON booleans. Its race switch puts a person's save between prelabel's
read of a document and its write."""
from __future__ import annotations

import time

import pandas as pd
import pytest
import requests

from emulator.export import write_export
from scripts.stack import Stack

from .conftest import SMS_CSV

N_DOCS = 400
N_CONFIRMS = 60


def wait_for(pred, timeout: float, what: str, stack: Stack):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = pred()
        if out:
            return out
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n--- worker log ---\n{stack.log_tail('worker')}"
                         f"\n--- web log ---\n{stack.log_tail('web')}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    df = pd.read_csv(SMS_CSV, keep_default_na=False)
    spam, ham = df[df.label == "spam"].head(100), df[df.label == "ham"].head(N_DOCS - 100)
    rows = pd.concat([spam, ham]).sample(frac=1.0, random_state=0)
    work = tmp_path_factory.mktemp("e2e")
    write_export(work / "export", ((f"row{i}.txt", t, None) for i, t in zip(rows.index, rows.text)), "isSpam")
    truth = {f"row{i}.txt": lab == "spam" for i, lab in zip(rows.index, rows.label)}
    s = Stack(work, work / "export", settings={"MIN_LABELS": "20", "MODEL_EPOCHS": "5", "PRELABEL_K": "5",
                                               "CV_FOLDS": "2",  # 3 fits per family and round
                                               "SYNC_INTERVAL_S": "3600"},
              emulator_args=("--settings-export-status", "403"))
    with s:
        yield s, truth


def test_confirms_train_a_model_and_prelabels_appear(stack):
    s, truth = stack
    docs = s.docids()
    assert len(docs) == N_DOCS
    # confirm a class-balanced first batch, as an annotator working a spam queue would
    spam_first = sorted(docs, key=lambda d: not truth[d[1]])[:20] + [d for d in docs if not truth[d[1]]][:N_CONFIRMS - 20]
    for docid, fn in spam_first:
        s.annotate(docid, {"isSpam": truth[fn]})
    wait_for(lambda: s.api("/api/v1/projects/1")["labels"] >= N_CONFIRMS, 120, "confirms stored", s)
    p = s.settle(quiet_s=4)
    assert p["events"].get("failed", 0) == 0 and p["events"]["done"] >= N_CONFIRMS
    assert p["champion"] is not None and p["champion"]["n_holdout"] == 0  # every label trains the model
    assert p["champion"]["n_train"] >= 20 and p["champion"]["dataset"] == "cross-validation"
    models = s.api("/api/v1/projects/1/versions")["versions"]
    assert models and all(m["f1"] is not None for m in models)

    ups = [e for e in s.emulator_log() if e["kind"] == "annotations" and not e.get("gui")]
    assert len(ups) >= 5
    human = {d for d, _ in spam_first}
    for e in ups:
        conf = e["metas"]["m_1"]["confidence"]
        assert conf["who"][0].startswith("ml:prelabel-v") and conf["state"] == "pre-added"
        assert 0 < conf["prob"] < 1 and isinstance(e["metas"]["m_1"]["value"], bool)
        assert e["anncomplete"] is False and e["docid"] not in human
    # the pre-labels are what tagtog now serves for those documents
    docid = ups[-1]["docid"]
    ann = requests.get(f"{s.emu_url}/-api/documents/v1", auth=s.user, params={
        "owner": "alice", "project": "spam", "ids": docid, "output": "ann.json"}).json()
    assert ann["metas"]["m_1"]["confidence"]["who"][0].startswith("ml:")
    # prelabel's own uploads came back as API webhooks and were ignored (no loop)
    hooks = [e for e in s.emulator_log() if e["kind"] == "webhook" and e["source"] == "API"]
    assert hooks and all(e["http_status"] == 200 for e in hooks)


def test_second_delivery_changes_nothing(stack):
    s, truth = stack
    before = s.settle(quiet_s=4)
    n_log = len(s.emulator_log())
    docid = [e for e in s.emulator_log() if e["kind"] == "annotations" and e.get("gui")][0]["docid"]
    body = {"owner": "alice", "project": "spam", "tagtogID": docid, "docid": docid, "member": "master"}
    r = requests.post(f"{s.web_url}/webhooks/tagtog", json=body, auth=s.hook_auth,
                      headers={"X-tagtog-onPushSave-source": "GUI", "X-tagtog-onPushSave-status": "updated"})
    assert r.status_code == 202
    eid = r.json()["event_id"]
    wait_for(lambda: s.api(f"/api/v1/events/{eid}")["state"] == "done", 60, "re-delivery processed", s)
    assert s.api(f"/api/v1/events/{eid}")["outcome"] == "unchanged"
    after = s.settle(quiet_s=4)
    assert after["labels"] == before["labels"] and after["uploads"] == before["uploads"]
    assert after["champion"]["version"] == before["champion"]["version"]
    assert not [e for e in s.emulator_log(n_log) if e["kind"] == "annotations"]


def test_bad_deliveries_over_http(stack):
    s, _ = stack
    url = f"{s.web_url}/webhooks/tagtog"
    r = requests.post(url, data="nope", auth=s.hook_auth)  # no Content-Type: tagtog always sends JSON
    assert r.status_code == 415 and "Content-Type" in r.json()["error"]
    r = requests.post(url, data="nope", headers={"Content-Type": "application/json"}, auth=s.hook_auth)
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    assert requests.post(url, json={"owner": "alice", "project": "spam"}, auth=s.hook_auth).status_code == 400
    assert requests.post(url, json={"owner": "alice", "project": "spam", "tagtogID": "x"},
                         auth=("tagtog-hook", "wrong")).status_code == 401
    r = requests.post(url, json={"owner": "bob", "project": "x", "tagtogID": "x"}, auth=s.hook_auth)
    assert r.status_code == 404 and "error" in r.json()


def test_unknown_label_id_fails_only_that_event(stack):
    s, truth = stack
    docid = next(d for d, fn in s.docids() if d not in {e["docid"] for e in s.emulator_log() if e.get("docid")})
    requests.post(f"{s.emu_url}/-emulator/annotate", auth=s.user, json={
        "owner": "alice", "project": "spam", "docid": docid, "confirm": True,
        "metas": {"m_7": {"value": True, "confidence": {"state": "", "who": ["user:alice"], "prob": 1}}}}
    ).raise_for_status()
    failed = wait_for(lambda: s.api("/api/v1/projects/1/events?state=failed")["events"], 60, "failed event", s)
    assert failed[0]["doc_id"] == docid and "m_7" in failed[0]["error"]
    assert s.api("/healthz")["status"] == "ok"


def _ann(s: Stack, docid: str) -> dict:
    return requests.get(f"{s.emu_url}/-api/documents/v1", auth=s.user, timeout=10, params={
        "owner": "alice", "project": "spam", "ids": docid, "output": "ann.json"}).json()


def _confirm_more(s: Stack, truth: dict, n: int) -> None:
    """n more confirms, the documents showing prelabel's suggestions first (as an annotator working the newest
    suggestions does: they leave the pool, so the next round pre-labels other documents even when the champion is
    kept), then documents nobody touched."""
    log = [e for e in s.emulator_log() if e["kind"] == "annotations"]
    by_person = {e["docid"] for e in log if e.get("gui")}
    suggested = list(dict.fromkeys(e["docid"] for e in reversed(log) if not e.get("gui")
                                   and e["docid"] not in by_person))
    docs = dict(s.docids())
    order = suggested + [d for d in docs if d not in by_person and d not in suggested]
    for docid in order[:n]:
        s.annotate(docid, {"isSpam": truth[docs[docid]]})


def _race(s: Stack, truth: dict, count: int, at: str) -> dict:
    """Arm the emulator's race switch, confirm 5 more documents so a round pre-labels, and wait until the race
    has fired ``count`` times; returns the switch (its ``docids``), then the settled project."""
    s.settle(quiet_s=3)
    s.emulator_switches(race={"count": count, "at": at, "labels": {"isSpam": True}, "user": "alice"})
    for _ in range(4):  # a round that keeps its champion may pre-label nothing new: confirm more
        _confirm_more(s, truth, 5)
        try:
            race = wait_for(lambda: (r := s.emulator_switches()["race"]) and r["count"] == 0 and r, 60,
                            f"{count} races", s)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError(f"the race switch never fired {count} times\n{s.log_tail('worker')}")
    s.settle(quiet_s=4)
    s.emulator_switches(race=None)
    return race


def test_a_person_save_between_read_and_write_is_never_lost(stack):
    """tagtog answers prelabel's read of a document, then a person labels and confirms it and tagtog delivers
    the webhook at once: prelabel's check right before the write sees the save waiting and leaves the document."""
    s, truth = stack
    n_log = len(s.emulator_log())
    race = _race(s, truth, 3, "read")
    for docid in race["docids"]:
        ann = _ann(s, docid)  # the person's label and confirmation are what tagtog holds
        assert ann["anncomplete"] is True and ann["metas"]["m_1"]["value"] is True
        assert ann["metas"]["m_1"]["confidence"]["who"] == ["user:alice"]
        writes = [e for e in s.emulator_log(n_log) if e["kind"] == "annotations" and e["docid"] == docid
                  and not e.get("gui")]
        assert writes == []  # prelabel never wrote over it
    events = s.api("/api/v1/projects/1/events?state=done&limit=200")["events"]
    stored = {e["doc_id"]: e["outcome"] for e in events if e["doc_id"] in race["docids"]}
    assert stored == {d: "labelled true" for d in race["docids"]}  # and prelabel stored them


def test_an_upload_that_lands_over_a_person_save_is_detected_and_undone(stack):
    """The worst case tagtog's API cannot prevent (no conditional write): the person's save lands between the
    read and the write, and its webhook arrives after the upload. prelabel sees the document shows its own
    upload made after that save, puts back what the upload replaced, says so on the event, counts it in
    /metrics, and never pre-labels that document again."""
    s, truth = stack
    race = _race(s, truth, 2, "write")
    events = s.api("/api/v1/projects/1/events?limit=200")["events"]
    caught = {e["doc_id"]: e["outcome"] for e in events if e["doc_id"] in race["docids"]}
    assert set(caught) == set(race["docids"]), caught
    for docid, outcome in caught.items():
        assert outcome.startswith("overwritten: prelabel v") and "were put back" in outcome, outcome
        log = [e for e in s.emulator_log() if e.get("docid") == docid and e["kind"] == "annotations"]
        race_i = next(i for i, e in enumerate(log) if e.get("race"))
        seen = log[race_i - 1]["metas"] if race_i else {}  # what prelabel read before its upload
        upload, restore = log[race_i + 1], log[race_i + 2]  # the upload over the save, then the put-back
        assert upload["metas"]["m_1"]["confidence"]["who"][0].startswith("ml:prelabel-v")
        assert restore["metas"] == seen and restore["anncomplete"] is False
        assert len(log) == race_i + 3  # never pre-labelled again
    metrics = requests.get(f"{s.web_url}/metrics", timeout=10).text
    line = [x for x in metrics.splitlines() if x.startswith("prelabel_person_saves_overwritten_total{")]
    assert len(line) == 1 and 'outcome="restored"' in line[0] and line[0].endswith(" 2.0"), line
