"""Scale-out with real servers: the tagtog emulator, prelabel's web process and TWO worker processes sharing a
Redis queue (QUEUE_URL) and a PostgreSQL store (DATABASE_URL), two projects. Every event is processed exactly
once, the trainings of a project never overlap, and the stored labels are what the annotators set, as in the
single-machine mode. Redis and PostgreSQL come from the Debian packages (devtools/servers.py starts throwaway
ones); skipped when they are not installed, unless PRELABEL_REQUIRE_SERVERS=1 (CI sets it)."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from emulator.export import write_export
from devtools.servers import Postgres, Redis, available
from scripts.stack import Stack

from .conftest import SMS_CSV

PROJECTS = ("spam", "spam2")
N_DOCS, N_CONFIRMS = 150, 120  # per project

if not all(available()):
    if os.environ.get("PRELABEL_REQUIRE_SERVERS") == "1":
        pytest.fail("PRELABEL_REQUIRE_SERVERS=1 but redis-server or PostgreSQL is not installed", pytrace=False)
    pytest.skip("redis-server and postgresql are not installed (apt-get install redis-server postgresql)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("scaleout")
    df = pd.read_csv(SMS_CSV, keep_default_na=False)
    rows = pd.concat([df[df.label == "spam"].head(40), df[df.label == "ham"].head(N_DOCS - 40)]).sample(
        frac=1.0, random_state=0)
    write_export(work / "export", ((f"row{i}.txt", t, None) for i, t in zip(rows.index, rows.text)), "isSpam")
    truth = {f"row{i}.txt": lab == "spam" for i, lab in zip(rows.index, rows.label)}
    with Redis() as redis, Postgres() as pg:
        stack = Stack(work, work / "export", workers=2, more_projects=PROJECTS[1:], settings={
            "QUEUE_URL": redis.url, "DATABASE_URL": pg.url, "MIN_LABELS": "20", "MODEL_FAMILIES": "quick",
            "PRELABEL_K": "3", "SYNC_INTERVAL_S": "3600", "RECONCILE_INTERVAL_S": "3600"})
        with stack:
            yield stack, pg, truth


def test_two_workers_process_every_event_once_and_never_train_a_project_twice_at_once(cluster):
    from sqlalchemy import func, select

    from storage import Document, Event, Project, Store, TrainingRun, current_labels

    stack, pg, truth = cluster
    confirms = {}
    for project in PROJECTS:
        docs = stack.docids(project=project)
        assert len(docs) == N_DOCS
        confirms[project] = docs[:N_CONFIRMS]

    def confirm(item):
        project, (docid, filename) = item
        stack.annotate(docid, {"isSpam": truth[filename]}, project=project)

    # both projects at once, as fast as 8 annotators can click
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(confirm, [(p, d) for i in range(N_CONFIRMS) for p in PROJECTS for d in [confirms[p][i]]]))
    # the ids by name: two workers creating a project at once leave a gap in PostgreSQL's sequence (the loser's
    # insert consumed an id), so the second project is not always id 2
    ids = {p["name"]: p["id"] for p in stack.api("/api/v1/projects")["projects"]}
    assert set(ids) == set(PROJECTS), ids
    for pid in ids.values():
        p = stack.settle(quiet_s=5, timeout=300, project=pid)
        assert p["champion"] is not None, stack.log_tail("worker")

    store = Store(pg.url)
    try:
        with store.session() as s:
            ids = {p.name: p.id for p in s.scalars(select(Project))}
            for project in PROJECTS:
                pid = ids[project]
                events = s.scalars(select(Event).where(Event.project_id == pid)).all()
                gui = [e for e in events if e.source == "GUI"]
                assert len(gui) == N_CONFIRMS, f"{project}: {len(gui)} GUI events"
                assert all(e.state == "done" for e in events), [(e.id, e.state, e.error) for e in events
                                                                if e.state != "done"]
                assert all(e.attempts == 1 for e in events)  # processed exactly once
                labels = {d.platform_id: json.loads(v) for d, v, _ in current_labels(s, pid)}
                expected = {docid: truth[fn] for docid, fn in confirms[project]}
                assert labels == expected  # what the annotators set, as the single-machine mode stores it
                assert s.scalar(select(func.count()).select_from(Document).where(
                    Document.project_id == pid)) == len({d.platform_id for d in s.scalars(
                        select(Document).where(Document.project_id == pid))})  # no document stored twice
                runs = s.scalars(select(TrainingRun).where(TrainingRun.project_id == pid)
                                 .order_by(TrainingRun.started_at)).all()
                assert len(runs) >= 1 and all(r.finished_at is not None for r in runs)
                for a, b in zip(runs, runs[1:]):  # at most one training of a project at any moment
                    assert a.finished_at <= b.started_at, (a.id, b.id)
            workers = {r.worker for r in s.scalars(select(TrainingRun))}
    finally:
        store.engine.dispose()
    assert workers  # which workers trained is recorded (host:pid)
    print(f"training runs by worker: {sorted(workers)}")  # noqa: T201 - shown with -s
    log = stack.log_tail("worker", 400) + stack.log_tail("worker2", 400)
    assert "Traceback" not in log
