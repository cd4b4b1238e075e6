"""Label Studio's webhook endpoint (app.py) and the ML-backend process (ml_backend.py), without a server:
auth, bad input, ignored and duplicate deliveries, coalescing, and the protocol's answers before any model."""
from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from app import create_app
from config import ProjectSpec
from web.ml_backend import create_app as create_ml_app

from ..conftest import ROOT
from ..formats.test_labelstudio import SPAM, sample

SECRET = {"X-Prelabel-Secret": "s3cret"}
LS = (ProjectSpec.parse("2", "labelstudio"),)


@pytest.fixture
def enqueued():
    return []


@pytest.fixture
def client(tmp_path, enqueued):
    app = create_app({"instance_path": str(tmp_path), "labelstudio_projects": LS,
                      "labelstudio_webhook_secret": "s3cret"})
    app.extensions["prelabel.enqueue"] = lambda eid, known=False: enqueued.append(eid)
    return app.test_client()


def post(client, body, headers=SECRET, path="/webhooks/labelstudio", **kw):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, headers=headers, content_type=kw.pop("content_type", "application/json"),
                       **kw)


def test_annotation_is_queued_with_its_task(client, enqueued):
    r = post(client, sample("annotation_created"))
    assert r.status_code == 202 and enqueued == [r.json["event_id"]]
    ev = client.get(f"/api/v1/events/{r.json['event_id']}").json
    assert (ev["platform"], ev["doc_id"], ev["kind"], ev["state"]) == ("labelstudio", "3", "ANNOTATION_CREATED",
                                                                      "queued")


def test_same_annotation_version_is_a_duplicate_even_after_processing(client, enqueued, tmp_path):
    first = post(client, sample("annotation_created"))
    assert post(client, sample("annotation_created")).json == {"status": "duplicate",
                                                                 "event_id": first.json["event_id"]}
    from storage import Store
    store = Store(f"sqlite:///{tmp_path / 'prelabel.db'}")
    store.claim_event(first.json["event_id"])
    store.finish_event(first.json["event_id"], "done", "labelled")
    assert post(client, sample("annotation_created")).status_code == 200  # still a duplicate once done
    assert post(client, sample("annotation_updated")).status_code == 202  # a new updated_at is new
    assert len(enqueued) == 2


def test_skipped_task_is_ignored(client, enqueued):
    r = post(client, sample("annotation_cancelled"))
    assert r.status_code == 200 and r.json["status"] == "ignored" and "skipped" in r.json["reason"]
    assert enqueued == []


def test_deletions_name_the_annotations(client):
    r = post(client, sample("annotations_deleted"))
    assert r.status_code == 202
    ev = client.get(f"/api/v1/events/{r.json['event_id']}").json
    assert (ev["kind"], ev["doc_id"]) == ("ANNOTATIONS_DELETED", "annotations:4")


def test_imports_coalesce_into_one_reconcile(client, enqueued):
    r1 = post(client, sample("tasks_created"))
    r2 = post(client, sample("tasks_created"))
    assert r1.status_code == 202 and r2.json["status"] == "duplicate" and len(enqueued) == 1
    assert client.get(f"/api/v1/events/{r1.json['event_id']}").json["kind"] == "reconcile"


def test_project_updated_and_unknown_actions(client, enqueued):
    body = json.loads(sample("tasks_created"))
    body.pop("tasks")
    body["action"] = "PROJECT_UPDATED"
    assert post(client, body).status_code == 202
    body["action"] = "LABEL_LINK_CREATED"
    r = post(client, body)
    assert r.status_code == 200 and r.json["status"] == "ignored"
    assert len(enqueued) == 1


@pytest.mark.parametrize("headers, status", [({}, 401), ({"X-Prelabel-Secret": "wrong"}, 401),
                                             ({"X-Other": "s3cret"}, 401)])
def test_wrong_secret_is_refused_and_nothing_stored(client, enqueued, headers, status):
    r = post(client, sample("annotation_created"), headers=headers)
    assert r.status_code == status and "secret" in r.json["error"]
    assert enqueued == [] and client.get("/api/v1/projects/1").json["events"] == {}


@pytest.mark.parametrize("body, kw, status, message", [
    (b"{", {}, 400, "not valid JSON"),
    (b'{"action": "ANNOTATION_CREATED", "project": {"id": 2}}', {}, 400, "annotation must be an object"),
    (b"{}", {"content_type": "text/plain"}, 415, "JSON"),
    (b'{"action": "ANNOTATION_CREATED", "project": {"id": 99}, "annotation": {"id": 1, "result": []}, '
     b'"task": {"id": 1}}', {}, 404, "project 99 is not served"),
])
def test_bad_input(client, enqueued, body, kw, status, message):
    r = post(client, body, **kw)
    assert r.status_code == status and message in r.json["error"]
    assert enqueued == []


def test_oversized_body_is_413(client):
    r = post(client, b'{"action": "TASKS_CREATED", "pad": "' + b"x" * (65 << 20) + b'"}')
    assert r.status_code == 413 and "error" in r.json


# -- ML backend -------------------------------------------------------------------------------------------------
@pytest.fixture
def ml(tmp_path, enqueued):
    def make(**overrides):
        app = create_ml_app({"instance_path": str(tmp_path), "labelstudio_projects": LS, **overrides})
        app.extensions["prelabel.enqueue"] = lambda eid, known=False: enqueued.append(eid)
        return app.test_client()
    return make


def basic(user: str, pw: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def test_ml_backend_before_any_model(ml):
    c = ml()
    assert c.get("/health").json == {"status": "UP", "model_class": "prelabel"}
    r = c.post("/setup", json={"project": "2.1763700000", "schema": SPAM, "access_token": "secret-token"})
    assert r.status_code == 200 and r.json == {"model_version": "prelabel-v0"}
    r = c.post("/predict", json={"project": "2.1763700000", "label_config": SPAM,
                                 "tasks": [{"id": 1, "data": {"text": "hello"}}]})
    # one empty list per task: Label Studio stores nothing and logs no "incorrect response" error
    assert r.status_code == 200 and r.json["results"] == [[]]
    assert c.get("/versions").json == {"versions": []}


def test_ml_backend_versions_without_a_project_are_the_served_projects(ml, tmp_path):
    """Label Studio asks GET /versions without a project: the versions of the served Label Studio project(s)."""
    from storage import ModelVersion, Store

    c = ml()
    store = Store(f"sqlite:///{tmp_path / 'prelabel.db'}")
    pid = store.find_project_id("labelstudio", "ls", "2")
    with store.session() as s:
        for v, status in ((1, "retired"), (2, "rejected"), (3, "champion")):
            s.add(ModelVersion(project_id=pid, version=v, family="quick", mode="full", path="", status=status))
    assert c.get("/versions").json == {"versions": ["prelabel-v3", "prelabel-v2", "prelabel-v1"]}
    assert c.get("/versions?project=2.1763700000").json == c.get("/versions").json


def test_ml_backend_unknown_project_is_a_clear_4xx(ml):
    c = ml()
    for path, body in (("/setup", {"project": "9.1"}),
                       ("/predict", {"project": "9.1", "label_config": SPAM, "tasks": []})):
        r = c.post(path, json=body)
        assert r.status_code == 404 and "does not serve Label Studio project 9" in r.json["error"]
        assert "LABELSTUDIO_PROJECTS" in r.json["error"]


@pytest.mark.parametrize("body, message", [
    ([], "JSON object"),
    ({"project": "2.1", "tasks": "x"}, "tasks"),
    ({"project": "2.1", "tasks": [{"id": 1, "data": {"other": "x"}}], "label_config": SPAM}, "no data.text"),
    ({"project": "2.1", "tasks": [], "label_config": "<View/>"}, "no <Choices>"),
])
def test_ml_backend_bad_predict_requests(ml, body, message):
    r = ml().post("/predict", json=body)
    assert r.status_code == 400 and message in r.json["error"]


def test_ml_backend_basic_auth(ml, enqueued):
    c = ml(ml_basic_auth_user="ls", ml_basic_auth_pass="pw")
    assert c.get("/health").status_code == 200  # health stays open: it says nothing
    assert c.post("/setup", json={"project": "2.1"}).status_code == 401
    assert c.post("/setup", json={"project": "2.1"}, headers=basic("ls", "nope")).status_code == 401
    assert c.post("/setup", json={"project": "2.1"}, headers=basic("ls", "pw")).status_code == 200
    assert c.post("/webhook", data=sample("annotation_created"), content_type="application/json").status_code == 401
    r = c.post("/webhook", data=sample("annotation_created"), content_type="application/json",
               headers=basic("ls", "pw"))
    assert r.status_code == 201 and len(enqueued) == 1


def test_ml_backend_webhook_start_training(ml, enqueued):
    c = ml()
    r = c.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 2}})
    assert r.status_code == 201 and len(enqueued) == 1
    assert c.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 2}}).json["status"] == "duplicate"


def test_ml_backend_and_web_never_leak_the_access_token(ml, caplog):
    c = ml()
    with caplog.at_level("DEBUG"):
        c.post("/setup", json={"project": "2.1", "access_token": "tok-123-secret"})
        c.post("/webhook", data=sample("annotation_created").replace(b"REDACTED", b"tok-123-secret"),
               content_type="application/json")
    assert "tok-123-secret" not in caplog.text


def test_web_process_still_never_imports_tensorflow(tmp_path):
    code = ("import sys, json; from app import create_app; from web.ml_backend import create_app as ml;"
            "a = create_app({'instance_path': sys.argv[1]}); m = ml({'instance_path': sys.argv[1]});"
            "m.test_client().get('/health'); m.test_client().post('/setup', json={'project': '1.1'});"
            "print(json.dumps(['tensorflow' in sys.modules, 'keras' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [False, False]
