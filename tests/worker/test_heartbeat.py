"""The worker says it is alive: a heartbeat in the store from the moment it can take jobs, shown by /healthz, the
dashboard and /metrics; a stopped or silent worker is not counted. A worker that trains only ``quick`` never loads
TensorFlow (checked in the real process's memory map)."""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from emulator.export import write_export
from scripts.stack import Stack
from storage import Store, Worker, utcnow
from worker.jobs import Heartbeat

from ..conftest import SMS_CSV


@pytest.fixture
def app(tmp_path):
    return create_app({"instance_path": str(tmp_path), "worker_heartbeat_s": 1})


def alive_metric(text: str) -> dict[str, float]:
    return {s.labels["queue"]: s.value for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == "prelabel_workers_alive"}


def test_heartbeat_reports_alive_then_stopped(app):
    store: Store = app.extensions["prelabel.store"]
    c = app.test_client()
    hb = Heartbeat(store, "host:1:abc", 0.05, "prelabel", "quick,embed")
    hb.start()
    try:
        first = c.get("/healthz").json["workers"]
        assert first["alive"] == 1 and first["queues"] == {"prelabel": 1, "prelabel-bert": 0}
        assert first["ready_after_s"] is not None and first["ready_after_s"] >= 0
        hb.jobs_done = 7
        deadline = time.monotonic() + 10
        while store.workers(3)[0]["jobs_done"] != 7:  # the beat thread writes it
            assert time.monotonic() < deadline, "heartbeat thread did not write"
            time.sleep(0.02)
        assert c.get("/healthz").json["workers"]["last_seen"] >= first["last_seen"]
        assert alive_metric(c.get("/metrics").text) == {"prelabel": 1.0, "prelabel-bert": 0.0}
        page = c.get("/dashboard").get_data(as_text=True)
        assert "host:1:abc" in page and "alive" in page and "quick, embed" in page
    finally:
        hb.stop()
    h = c.get("/healthz")
    assert h.status_code == 200 and h.json["workers"]["alive"] == 0  # stopped cleanly: not counted
    assert "stopped" in c.get("/dashboard").get_data(as_text=True)
    assert alive_metric(c.get("/metrics").text)["prelabel"] == 0.0


def test_a_silent_worker_is_not_alive_and_old_ones_are_forgotten(app):
    store: Store = app.extensions["prelabel.store"]
    store.worker_beat("host:2:killed", queues="prelabel")
    store.worker_beat("host:3:long-gone", queues="prelabel")
    with store.session() as s:  # killed with -9: no last beat, it just goes quiet
        s.get(Worker, "host:2:killed").last_seen = utcnow() - timedelta(seconds=4)
        s.get(Worker, "host:3:long-gone").last_seen = utcnow() - timedelta(days=2)
    c = app.test_client()
    assert c.get("/healthz").json["workers"]["alive"] == 0  # 4 s > 3 heartbeats of 1 s
    assert "not seen for" in c.get("/dashboard").get_data(as_text=True)
    store.worker_beat("host:4:new", queues="prelabel-bert")  # a new worker's first beat prunes day-old rows
    assert {w["id"] for w in store.workers(3)} == {"host:2:killed", "host:4:new"}
    assert c.get("/healthz").json["workers"]["queues"] == {"prelabel": 0, "prelabel-bert": 1}


def test_dashboard_says_when_no_worker_has_reported(app):
    page = app.test_client().get("/dashboard").get_data(as_text=True)
    assert "no worker has reported" in page


def test_quick_worker_is_ready_and_trains_without_tensorflow(tmp_path):
    df = pd.read_csv(SMS_CSV, keep_default_na=False)
    rows = pd.concat([df[df.label == "spam"].head(15), df[df.label == "ham"].head(45)]).sample(frac=1.0, random_state=1)
    write_export(tmp_path / "export", ((f"row{i}.txt", t, None) for i, t in zip(rows.index, rows.text)), "isSpam")
    truth = {f"row{i}.txt": lab == "spam" for i, lab in zip(rows.index, rows.label)}
    stack = Stack(tmp_path, tmp_path / "export", settings={
        "MODEL_FAMILIES": "quick", "MIN_LABELS": "20", "PRELABEL_K": "5", "WORKER_HEARTBEAT_S": "1"})
    with stack:
        ready = stack.wait_ready(60)
        assert ready["alive"] == 1 and ready["queues"]["prelabel"] == 1
        for docid, fn in stack.docids()[:30]:
            stack.annotate(docid, {"isSpam": truth[fn]})
        deadline = time.monotonic() + 120
        while not stack.api("/api/v1/projects/1/versions")["versions"]:
            assert time.monotonic() < deadline, stack.log_tail("worker")
            time.sleep(0.3)
        stack.settle(quiet_s=2)
        worker = stack.procs["worker"]
        maps = Path(f"/proc/{worker.pid}/maps").read_text()
        assert "libtensorflow" not in maps and "_pywrap_tensorflow" not in maps
        assert stack.api("/healthz")["workers"]["alive"] == 1
    with Store(f"sqlite:///{tmp_path / 'instance' / 'prelabel.db'}").session() as s:  # stopped with SIGTERM
        assert s.query(Worker).one().stopped_at is not None
