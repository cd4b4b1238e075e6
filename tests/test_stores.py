"""The store's concurrency guarantees on SQLite and on a real PostgreSQL (Debian package, started by the test):
a delivery recorded once while pending, an event claimed by exactly one worker, retrain requests coalesced.
PostgreSQL is skipped when not installed, unless PRELABEL_REQUIRE_SERVERS=1 (CI sets it)."""
from __future__ import annotations

import os
import threading

import pytest

from devtools.servers import Postgres, available
from storage import Event, Store

HAVE_PG = available()[1]


@pytest.fixture(scope="module")
def postgres():
    if not HAVE_PG:
        if os.environ.get("PRELABEL_REQUIRE_SERVERS") == "1":
            pytest.fail("PRELABEL_REQUIRE_SERVERS=1 but PostgreSQL is not installed", pytrace=False)
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with Postgres() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        st = Store(f"sqlite:///{tmp_path / 'prelabel.db'}")
    else:
        pg = request.getfixturevalue("postgres")
        st = Store(pg.url)
        from storage import Base
        Base.metadata.drop_all(st.engine)  # each test starts from an empty schema
    st.create_all()
    yield st
    st.engine.dispose()


def record(store, pid, key, once=False):
    return store.record_event(project_id=pid, platform="tagtog", doc_id="d.txt", member="m", source="GUI",
                              kind="updated", dedup_key=key, once=once)


def test_a_pending_delivery_is_recorded_once(store):
    pid = store.ensure_project("tagtog", "alice", "spam")
    assert store.ensure_project("tagtog", "alice", "spam") == pid
    first, new = record(store, pid, "k1")
    assert new and record(store, pid, "k1") == (first, False)
    assert store.claim_event(first) is not None
    second, new = record(store, pid, "k1")  # after processing started, a redelivery is a new event
    assert new and second != first
    third, new = record(store, pid, "k2", once=True)
    assert new and store.claim_event(third) is not None
    assert record(store, pid, "k2", once=True) == (third, False)  # once: never again
    with store.session() as s:
        assert s.query(Event).count() == 3


def test_concurrent_deliveries_and_claims(store):
    """16 threads deliver the same webhook and then race to claim it: one event, one winner."""
    pid = store.ensure_project("tagtog", "alice", "spam")
    results, claims, barrier = [], [], threading.Barrier(16)

    def deliver():
        barrier.wait()
        results.append(record(store, pid, "same"))

    threads = [threading.Thread(target=deliver) for _ in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    ids = {r[0] for r in results}
    assert len(ids) == 1 and sum(r[1] for r in results) == 1
    (eid,) = ids

    def claim():
        barrier.wait()
        claims.append(store.claim_event(eid))

    threads = [threading.Thread(target=claim) for _ in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sum(c is not None for c in claims) == 1
    assert store.get_event(eid)["attempts"] == 1


def test_retrain_requests_coalesce(store):
    pid = store.ensure_project("tagtog", "alice", "spam")
    assert store.request_retrain(pid) is True and store.request_retrain(pid) is False
    assert store.take_retrain_request(pid) is True and store.take_retrain_request(pid) is False
    assert store.retrain_pending(pid) is False


def test_a_run_takes_the_request_and_shows_training_in_one_step(store):
    """A worker killed between taking the request and opening its run would lose the retrain: one transaction."""
    pid = store.ensure_project("tagtog", "alice", "spam")
    assert store.begin_run(pid, "w1") is None  # nothing requested
    store.request_retrain(pid)
    run = store.begin_run(pid, "w1")
    assert run is not None and store.begin_run(pid, "w2") is None
    assert not store.retrain_pending(pid) and store.project_summary(pid)["training"]
    assert store.recover_runs(lambda worker, started: worker == "w1") == [pid]  # w1 was killed: request restored
    assert store.retrain_pending(pid) and not store.project_summary(pid)["training"]
    run = store.begin_run(pid, "w2")
    store.finish_run(run, "v1 champion")
    assert not store.project_summary(pid)["training"] and not store.retrain_pending(pid)


def test_redis_url_names_the_queue():
    from config import Settings

    assert Settings.from_env({"REDIS_URL": "redis://r:6379/0"}).queue_url == "redis://r:6379/0"
    assert Settings.from_env({"REDIS_URL": "redis://r:6379/0", "QUEUE_URL": "redis://q/1"}).queue_url == "redis://q/1"
    assert Settings.from_env({}).queue_url == ""


def test_the_sweep_fails_versions_left_saving_in_every_project(store):
    """A version whose record the database refused stays "saving" (no files); the sweep marks it failed."""
    from storage import ModelVersion

    a, b = store.ensure_project("tagtog", "alice", "a"), store.ensure_project("tagtog", "alice", "b")
    with store.session() as s:
        for pid, path in ((a, ""), (b, ""), (b, "/models/b/v2")):
            s.add(ModelVersion(project_id=pid, version=len(path) + 1, family="quick", mode="full", path=path,
                               status="saving"))
    assert store.fail_orphan_versions(None, older_than_s=3600) == 0  # a save in progress is recent
    assert store.fail_orphan_versions(None, older_than_s=0) == 2  # both projects' unwritten rows; not the saved one
    assert [v["status"] for v in store.list_models(a)] == ["failed"]
    assert sorted(v["status"] for v in store.list_models(b)) == ["failed", "saving"]


_EMBED_CHILD = """
import json, sys
import pandas as pd
from model.embed import encoder_for, use_store
texts = [f"{t} ^{i}" for i, t in enumerate(pd.read_csv(sys.argv[2], keep_default_na=False).text[:int(sys.argv[3])])]
use_store(sys.argv[1])
enc = encoder_for()
calls = []
real = enc.model.predict_on_batch
enc.model.predict_on_batch = lambda x: calls.append(len(x["token_ids"])) or real(x)
vec = enc.encode(texts)
print(json.dumps({"batches": len(calls), "sum": float(vec.sum()), "stored": enc.store.count(enc.space)}))
"""


def test_two_workers_share_the_embedding_store_in_postgresql(postgres):
    """Workers on two machines share the database, not a folder: the second process embeds nothing the first
    already did, and reads the same vectors (a real PostgreSQL; each worker is its own process)."""
    import json
    import subprocess
    import sys

    from config import Settings

    from .conftest import ROOT, SMS_CSV

    url = Settings(database_url=postgres.url).embedding_cache_path
    assert url == postgres.url  # the default with DATABASE_URL on PostgreSQL

    def worker(n):
        r = subprocess.run([sys.executable, "-c", _EMBED_CHILD, url, str(SMS_CSV), str(n)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    first = worker(40)
    assert first["batches"] >= 1 and first["stored"] >= 40
    second = worker(40)
    assert second["batches"] == 0 and second["sum"] == first["sum"]  # nothing embedded again, the same vectors
    third = worker(45)  # five new texts: only they are embedded
    assert 1 <= third["batches"] <= 5 and third["stored"] == first["stored"] + 5  # a batch per width at most
