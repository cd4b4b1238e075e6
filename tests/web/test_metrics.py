"""GET /metrics (Prometheus): webhook counts by platform and outcome, events, queue depth, trainings and champion
scores from the database; summed over gunicorn workers; a token when configured. JSON logs."""
from __future__ import annotations

import json
import logging

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from config import ProjectSpec
from config import setup_logging
from scripts.stack import Stack
from storage import ModelVersion, Project

HOOK = {"owner": "alice", "project": "spam", "tagtogID": "d-1.txt", "docid": "d-1.txt", "member": "master"}
GUI = {"X-tagtog-onPushSave-source": "GUI", "X-tagtog-onPushSave-status": "updated"}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.fixture
def app(tmp_path):
    app = create_app({"instance_path": str(tmp_path), "tagtog_projects": (ProjectSpec("tagtog", "alice", "spam"),)})
    app.extensions["prelabel.enqueue"] = lambda *_: None
    return app


def test_metrics_count_webhooks_events_trainings_and_scores(app):
    c = app.test_client()
    hook = lambda body, **kw: c.post("/webhooks/tagtog", data=json.dumps(body), headers=GUI,  # noqa: E731
                                     content_type="application/json", **kw)
    assert hook(HOOK).status_code == 202
    assert hook(HOOK).status_code == 200  # duplicate
    assert hook({**HOOK, "docid": "d-2.txt", "tagtogID": "d-2.txt"}).status_code == 202
    assert hook({**HOOK, "project": "other"}).status_code == 404
    assert c.post("/webhooks/tagtog", data=b"{", headers=GUI, content_type="application/json").status_code == 400
    store = app.extensions["prelabel.store"]
    with store.session() as s:
        p = s.get(Project, 1)
        for v, (status, secs) in enumerate([("retired", 2.0), ("champion", 3.5), ("rejected", 1.0)], start=1):
            mv = ModelVersion(project_id=1, version=v, family="quick", mode="full", path="", status=status,
                              train_seconds=secs, metrics={"f1_macro": 0.5 + v / 10, "dataset": "validation"},
                              test_metrics={"f1_macro": 0.61} if status == "champion" else {})
            s.add(mv)
            s.flush()
            if status == "champion":
                p.champion_id = mv.id
    r = c.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    m = samples(r.text)
    hooks = {k[1]: v for k, v in m.items() if k[0] == "prelabel_webhooks_total"}
    assert hooks == {(("outcome", "queued"), ("platform", "tagtog")): 2.0,
                     (("outcome", "duplicate"), ("platform", "tagtog")): 1.0,
                     (("outcome", "404"), ("platform", "tagtog")): 1.0,
                     (("outcome", "400"), ("platform", "tagtog")): 1.0}
    slug = (("project", "tagtog-alice-spam"),)
    assert m[("prelabel_events", (("project", "tagtog-alice-spam"), ("state", "queued")))] == 2
    assert m[("prelabel_queue_depth", slug)] == 2
    assert m[("prelabel_trainings_total", (("family", "quick"), ("project", "tagtog-alice-spam"),
                                           ("status", "champion")))] == 1
    assert m[("prelabel_training_seconds_total", (("family", "quick"), ("project", "tagtog-alice-spam")))] == 6.5
    assert m[("prelabel_last_training_seconds", (("family", "quick"), ("project", "tagtog-alice-spam")))] == 1.0
    assert m[("prelabel_champion_score", (("dataset", "validation"), ("metric", "f1_macro"),
                                          ("project", "tagtog-alice-spam"), ("version", "2")))] == pytest.approx(0.7)
    assert m[("prelabel_champion_score", (("dataset", "test"), ("metric", "f1_macro"),
                                          ("project", "tagtog-alice-spam"), ("version", "2")))] == pytest.approx(0.61)


def test_metrics_need_the_token_when_one_is_set(tmp_path):
    app = create_app({"instance_path": str(tmp_path), "metrics_token": "scrape-me"})
    c = app.test_client()
    assert c.get("/metrics").status_code == 401 and "METRICS_TOKEN" in c.get("/metrics").json["error"]
    assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/metrics", headers={"Authorization": "Bearer scrape-me"}).status_code == 200


def test_webhook_counts_are_summed_over_gunicorn_workers(tmp_path):
    """Two gunicorn workers each count their own webhooks; any scrape sums them (multiprocess mode)."""
    stack = Stack(tmp_path, tmp_path, tagtog=False, start_worker=False, web_workers=2,
                  settings={"TAGTOG_PROJECTS": "alice/spam", "WEBHOOK_USERNAME": "", "WEBHOOK_PASSWORD": ""})
    stack.start()
    try:
        with requests.Session() as a, requests.Session() as b:  # two connections: both workers take requests
            for i in range(30):
                body = {**HOOK, "docid": f"d-{i}.txt", "tagtogID": f"d-{i}.txt"}
                r = (a if i % 2 else b).post(f"{stack.web_url}/webhooks/tagtog", json=body, headers=GUI, timeout=10)
                assert r.status_code == 202
        for _ in range(4):  # whichever worker answers the scrape
            m = samples(requests.get(f"{stack.web_url}/metrics", timeout=10).text)
            assert m[("prelabel_webhooks_total", (("outcome", "queued"), ("platform", "tagtog")))] == 30
            assert m[("prelabel_queue_depth", (("project", "tagtog-alice-spam"),))] == 30
    finally:
        stack.stop()


def test_json_logs_are_one_object_per_line(capsys):
    try:
        setup_logging("INFO", "json")
        logging.getLogger("prelabel.test").info("trained %s", "v3", extra={"project": "spam"})
        line = capsys.readouterr().err.strip().splitlines()[-1]
        record = json.loads(line)
        assert record["message"] == "trained v3" and record["level"] == "INFO" and record["project"] == "spam"
        assert record["logger"] == "prelabel.test" and "time" in record
    finally:
        setup_logging("WARNING", "text")
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        from config import Settings
        Settings.from_env({"LOG_FORMAT": "xml"})
