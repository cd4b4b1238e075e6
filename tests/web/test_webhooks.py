"""The web handler: 202/400/401/404, duplicates enqueued once, nothing stored half-way, no TensorFlow."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app import create_app
from config import ProjectSpec

from ..conftest import ROOT

HOOK = {"owner": "alice", "project": "spam", "tagtogID": "aAbc-1.txt", "docid": "aAbc-1.txt", "member": "master"}
GUI = {"X-tagtog-onPushSave-source": "GUI", "X-tagtog-onPushSave-status": "updated"}


@pytest.fixture
def enqueued():
    return []


@pytest.fixture
def make_app(tmp_path, enqueued):
    def make(**overrides):
        cfg = {"instance_path": str(tmp_path), "tagtog_projects": (ProjectSpec("tagtog", "alice", "spam"),), **overrides}
        app = create_app(cfg)
        app.extensions["prelabel.enqueue"] = lambda eid, known=False: enqueued.append(eid)
        return app
    return make


@pytest.fixture
def client(make_app):
    return make_app().test_client()


def post(client, body=HOOK, headers=GUI, **kw):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/webhooks/tagtog", data=data, headers=headers, content_type="application/json", **kw)


def test_valid_delivery_is_queued_and_stored(client, enqueued):
    r = post(client)
    assert r.status_code == 202 and r.json["status"] == "queued"
    assert enqueued == [r.json["event_id"]]
    ev = client.get(f"/api/v1/events/{r.json['event_id']}").json
    assert (ev["doc_id"], ev["state"], ev["source"], ev["kind"]) == ("aAbc-1.txt", "queued", "GUI", "updated")


def test_duplicate_delivery_is_enqueued_once(client, enqueued):
    first, second = post(client), post(client)
    assert first.status_code == 202
    assert second.status_code == 200 and second.json == {"status": "duplicate", "event_id": first.json["event_id"]}
    assert enqueued == [first.json["event_id"]]
    assert len(client.get("/api/v1/projects/1/events").json["events"]) == 1


def test_redelivery_after_processing_started_is_a_new_event(make_app, enqueued):
    app = make_app()
    c = app.test_client()
    first = post(c)
    app.extensions["prelabel.store"].claim_event(first.json["event_id"])
    again = post(c)
    assert again.status_code == 202 and again.json["event_id"] != first.json["event_id"]


def test_other_document_or_status_is_not_a_duplicate(client, enqueued):
    post(client)
    post(client, {**HOOK, "tagtogID": "aOther-2.txt", "docid": "aOther-2.txt"})
    post(client, headers={**GUI, "X-tagtog-onPushSave-status": "created"})
    assert len(enqueued) == 3


@pytest.mark.parametrize("body,needle", [
    ("not json", "JSON"), ({"owner": "alice", "project": "spam"}, "tagtogID"), ([1, 2], "object"),
    ({"owner": "alice", "tagtogID": "x"}, "project"),
])
def test_bad_bodies_are_400_and_store_nothing(client, enqueued, body, needle):
    r = post(client, body)
    assert r.status_code == 400 and needle in r.json["error"]
    assert enqueued == [] and client.get("/api/v1/projects/1/events").json["events"] == []


def test_bad_header_is_400(client):
    r = post(client, headers={"X-tagtog-onPushSave-source": "SOMETHING"})
    assert r.status_code == 400 and "source" in r.json["error"]


def test_unknown_project_is_404(client, enqueued):
    r = post(client, {**HOOK, "project": "other"})
    assert r.status_code == 404 and "alice/other" in r.json["error"] and enqueued == []


def test_api_saves_are_ignored_by_default(make_app, enqueued):
    c = make_app().test_client()
    r = post(c, headers={"X-tagtog-onPushSave-source": "API", "X-tagtog-onPushSave-status": "updated"})
    assert r.status_code == 200 and r.json["status"] == "ignored" and enqueued == []
    c = make_app(ignore_api_source=False).test_client()
    assert post(c, headers={"X-tagtog-onPushSave-source": "API"}).status_code == 202


def test_basic_auth(make_app, enqueued):
    c = make_app(webhook_username="tagtog", webhook_password="s3cret").test_client()
    assert post(c).status_code == 401
    r = post(c, auth=("tagtog", "wrong"))
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers and "s3cret" not in r.get_data(as_text=True)
    assert post(c, auth=("nottagtog", "s3cret")).status_code == 401
    assert enqueued == []
    assert post(c, auth=("tagtog", "s3cret")).status_code == 202


def test_api_token(make_app):
    c = make_app(api_token="tok").test_client()
    assert c.get("/api/v1/projects").status_code == 401
    assert c.get("/api/v1/projects", headers={"Authorization": "Bearer tok"}).status_code == 200


def test_enqueue_failure_keeps_the_event(make_app):
    app = make_app()
    def broken(*_):
        raise ConnectionError("queue down")
    app.extensions["prelabel.enqueue"] = broken
    c = app.test_client()
    r = post(c)
    assert r.status_code == 202  # accepted: stored durably; the worker's sweep enqueues it later
    assert c.get(f"/api/v1/events/{r.json['event_id']}").json["state"] == "queued"


def test_oversized_body_is_413_json(client):
    r = post(client, b"{" + b" " * (2 << 20) + b"}")
    assert r.status_code == 413 and "error" in r.json


def test_errors_are_json_without_traceback(client):
    r = client.get("/nope")
    assert r.status_code == 404 and set(r.json) == {"error"}
    r = client.get("/webhooks/tagtog")
    assert r.status_code == 405 and "Traceback" not in r.get_data(as_text=True)
    assert client.get("/api/v1/events/999").status_code == 404


def test_retry_only_failed_events_with_admin_token(make_app, enqueued):
    app = make_app(admin_token="adm")
    app.extensions["prelabel.enqueue"] = lambda eid, known=False: enqueued.append(eid)
    c = app.test_client()
    eid = post(c).json["event_id"]
    admin = {"Authorization": "Bearer adm"}
    assert c.post(f"/api/v1/events/{eid}/retry").status_code == 401
    assert c.post(f"/api/v1/events/{eid}/retry", headers=admin).status_code == 409
    app.extensions["prelabel.store"].finish_event(eid, "failed", error="boom")
    assert c.post(f"/api/v1/events/{eid}/retry", headers=admin).status_code == 202
    assert enqueued == [eid, eid]


def test_admin_calls_refused_without_admin_token(client):
    r = client.post("/api/v1/projects/1/retrain")
    assert r.status_code == 403 and "ADMIN_TOKEN" in r.json["error"]


def test_healthz(client):
    # no worker has reported yet: the web process is still healthy (events wait in the queue)
    assert client.get("/healthz").json == {"status": "ok", "database": "ok", "workers": {
        "alive": 0, "queues": {"prelabel": 0, "prelabel-bert": 0}, "last_seen": None, "ready_after_s": None}}


def test_web_process_does_not_import_tensorflow(tmp_path):
    code = ("import sys, json; from app import create_app; a = create_app({'instance_path': %r}); "
            "a.test_client().post('/webhooks/tagtog', data='{}'); "
            "print(json.dumps([m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules]))" % str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_person_label_is_queued_ahead_of_a_flood_of_unknown_documents(tmp_path):
    """bench.webhooks --flood, small: deliveries for documents prelabel never saw are queued behind a person's
    save of a document it knows (Huey priorities), with a real web process, worker and tagtog emulator."""
    from bench.webhooks import flood

    r = flood(tmp_path, n_unknown=400, n_docs=20)
    assert r["flood_acknowledged"] == 400
    assert r["flood_still_waiting_then"] > 200, r  # the confirm jumped the queue: most of the flood still waits
