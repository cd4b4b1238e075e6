"""The store: engine and sessions, and the few multi-step operations that must be atomic.

SQLite file by default (WAL, busy timeout), any SQLAlchemy URL (e.g. PostgreSQL) via DATABASE_URL.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator

from sqlalchemy import create_engine, event, func, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from model.names import mode_of

from .tables import (UNSAVED, Base, CorpusMap, Document, Event, InFlight, ModelVersion, Project, Suspect, TrainingRun, Upload,
                     Worker, current_labels, utcnow)

logger = logging.getLogger(__name__)
ACCEPTANCE_ROUNDS = 20  # rounds whose acceptance a project summary lists (the newest)


class Store:
    """Owns the engine and sessions. One per process."""

    def __init__(self, url: str, *, echo: bool = False, busy_timeout_s: float = 30.0) -> None:
        """``busy_timeout_s``: how long a SQLite write waits for a lock held elsewhere before it fails."""
        self.url = url
        kwargs: dict[str, Any] = {"echo": echo}
        if url.startswith("sqlite"):
            from pathlib import Path  # noqa: PLC0415

            from sqlalchemy.engine import make_url  # noqa: PLC0415

            db = make_url(url).database
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": busy_timeout_s, "check_same_thread": False}
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", lambda conn, rec: _sqlite_pragmas(conn, rec, busy_timeout_s))
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    def create_all(self) -> None:
        """Create missing tables. Safe when several processes start at once on a new database (gunicorn
        workers, the worker): a creator that loses the race retries and then finds the tables there."""
        import time  # noqa: PLC0415

        from sqlalchemy.exc import DBAPIError  # noqa: PLC0415

        for attempt in range(5):
            try:
                Base.metadata.create_all(self.engine)
                self._add_missing_columns()
                return
            except DBAPIError:
                if attempt == 4:
                    raise
                logger.info("schema creation raced with another process; retrying")
                time.sleep(0.2 * (attempt + 1))

    def _add_missing_columns(self) -> None:
        """Additive migration: columns added to a model since a database was created are added to its table
        (all such columns are nullable). Removing or changing columns needs a real migration."""
        from sqlalchemy import inspect  # noqa: PLC0415

        insp = inspect(self.engine)
        with self.engine.begin() as conn:
            for table in Base.metadata.sorted_tables:
                have = {c["name"] for c in insp.get_columns(table.name)}
                for col in table.columns:
                    if col.name not in have:
                        ddl = col.type.compile(dialect=self.engine.dialect)
                        conn.exec_driver_sql(f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {ddl}')
                        logger.info("database: added column %s.%s", table.name, col.name)
                for index in table.indexes:  # indexes on those columns too (create_all adds them to new tables only)
                    index.create(conn, checkfirst=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on any error."""
        with self.Session.begin() as s:
            yield s

    def prepare(self, projects: Any) -> "Store":
        """Create missing tables and a row for every configured project (``ProjectSpec``s): what each process
        (web, ML backend, worker) does at start."""
        self.create_all()
        for spec in projects:
            self.ensure_project(spec.platform, spec.owner, spec.name, spec.label)
        return self

    # -- projects
    def ensure_project(self, platform: str, owner: str, name: str, label_name: str = "") -> int:
        with self.session() as s:
            p = s.scalar(select(Project).filter_by(platform=platform, owner=owner, name=name))
            if p is None:
                p = Project(platform=platform, owner=owner, name=name, label_name=label_name)
                s.add(p)
                try:
                    s.flush()
                except IntegrityError:  # another process created it first
                    s.rollback()
                    return self.ensure_project(platform, owner, name, label_name)
            elif label_name and p.label_name != label_name:
                p.label_name, p.label_id, p.label_type, p.label_ids = label_name, None, None, None
            return p.id

    def set_embedding_progress(self, project_id: int, embedded: int, total: int) -> None:
        """Record how many of the project's documents have a stored sentence embedding (its own column: the
        worker's warm-up writes it while a retrain may write the schedule)."""
        with self.session() as s:
            p = s.get(Project, project_id)
            if p is not None:
                p.embedding = {"embedded": int(embedded), "of": int(total), "at": utcnow().isoformat() + "Z"}

    # -- labels most likely wrong (model/suspects.py)
    def replace_suspects(self, project_id: int, version: int | None, rows: list[dict[str, Any]],
                         current: dict[int, tuple[int, str]]) -> int:
        """The round's list, most likely wrong first (``rows``: document_id, label_id, given, predicted,
        probability, quality). ``current``: document id -> (current label id, value) of every label. A listed
        label a person saved again since (a newer label, same value) was re-confirmed: dismissed, kept, and the
        same document with the same label is never listed again. Returns how many are listed."""
        with self.session() as s:
            for old in s.scalars(select(Suspect).where(Suspect.project_id == project_id,
                                                       Suspect.dismissed_at.is_(None))):
                now = current.get(old.document_id)
                if now is not None and now[0] != old.label_id and now[1] == old.given:
                    old.dismissed_at, old.dismissed_by = utcnow(), "re-confirmed on the platform"
                else:
                    s.delete(old)  # the last round's list: replaced by this one
            s.flush()
            dismissed = set(s.execute(select(Suspect.document_id, Suspect.given).where(
                Suspect.project_id == project_id, Suspect.dismissed_at.is_not(None))).all())
            listed = [r for r in rows if (r["document_id"], r["given"]) not in dismissed]
            s.add_all([Suspect(project_id=project_id, version=version, rank=i, **r) for i, r in enumerate(listed)])
            return len(listed)

    def suspects(self, project_id: int, limit: int = 100, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """(how many are listed, the page ``offset``..``offset + limit`` of them, most likely wrong first)."""
        with self.session() as s:
            total = s.scalar(select(func.count()).select_from(Suspect).where(
                Suspect.project_id == project_id, Suspect.dismissed_at.is_(None))) or 0
            q = (select(Suspect, Document).join(Document, Document.id == Suspect.document_id)
                 .where(Suspect.project_id == project_id, Suspect.dismissed_at.is_(None))
                 .order_by(Suspect.rank).offset(offset).limit(limit))
            items = [{"document_id": d.id, "platform_id": d.platform_id, "text": d.text[:300],
                      "label": json.loads(x.given), "predicted": json.loads(x.predicted),
                      "probability": round(x.probability, 4), "label_quality": round(x.quality, 4),
                      "rank": x.rank + 1, "version": x.version} for x, d in s.execute(q)]
        return int(total), items

    def map_outdated(self, project_id: int) -> bool:
        """True when the project has a champion and no map drawn for it (worker/loop/mapping.py)."""
        with self.session() as s:
            p = s.get(Project, project_id)
            if p is None or p.champion_id is None:
                return False
            m = s.get(CorpusMap, project_id)
            return m is None or m.version != s.get(ModelVersion, p.champion_id).version

    def corpus_map(self, project_id: int) -> dict[str, Any] | None:
        with self.session() as s:
            m = s.get(CorpusMap, project_id)
            return None if m is None else {"version": m.version, "computed_at": m.computed_at, "seconds": m.seconds,
                                           "n_documents": m.n_documents, "points": m.points}

    def dismiss_suspect(self, project_id: int, document_id: int, who: str) -> bool:
        """A person looked and keeps the label: the document leaves the list for that label value."""
        with self.session() as s:
            rows = list(s.scalars(select(Suspect).where(Suspect.project_id == project_id,
                                                        Suspect.document_id == document_id,
                                                        Suspect.dismissed_at.is_(None))))
            for r in rows:
                r.dismissed_at, r.dismissed_by = utcnow(), who[:200]
            return bool(rows)

    def delete_project(self, project_id: int) -> bool:
        """Remove a project that holds nothing yet (a command that created it and then failed); False, and nothing
        removed, when it has documents."""
        with self.session() as s:
            if s.scalar(select(Document.id).where(Document.project_id == project_id).limit(1)) is not None:
                return False
            p = s.get(Project, project_id)
            if p is not None:
                s.delete(p)
            return p is not None

    def find_project_id(self, platform: str, owner: str, name: str) -> int | None:
        with self.session() as s:
            return s.scalar(select(Project.id).filter_by(platform=platform, owner=owner, name=name))

    # -- events
    def record_event(self, *, project_id: int, platform: str, doc_id: str, member: str, source: str, kind: str,
                     dedup_key: str, once: bool = False) -> tuple[int, bool]:
        """Store a delivery durably. Returns (event id, True) when new, (id of the pending twin, False) when an
        identical delivery is still waiting to be processed, or, with ``once``, was ever processed (a platform
        that re-sends the same annotation version)."""
        with self.Session() as s:
            if once:
                seen = s.scalar(select(Event.id).where(Event.dedup_key == dedup_key, Event.state != "failed")
                                .limit(1))
                if seen is not None:
                    return seen, False
            ev = Event(project_id=project_id, platform=platform, doc_id=doc_id, member=member, source=source,
                       kind=kind, dedup_key=dedup_key, enqueued_at=utcnow())
            s.add(ev)
            s.flush()
            ins = _insert(self.engine)(InFlight).values(key=dedup_key, event_id=ev.id).on_conflict_do_nothing()
            # RETURNING, not rowcount: psycopg 3 reports rowcount -1 here (found with a real PostgreSQL)
            if s.execute(ins.returning(InFlight.key)).first() is not None:
                s.commit()
                return ev.id, True
            twin = s.scalar(select(InFlight.event_id).where(InFlight.key == dedup_key))
            s.rollback()  # nothing of the duplicate is stored
            return (twin or 0), False

    def claim_event(self, event_id: int) -> Event | None:
        """Mark an event as being processed; None if another worker has it or it is finished."""
        with self.session() as s:
            n = s.execute(update(Event).where(Event.id == event_id, Event.state == "queued")
                          .values(state="processing", started_at=utcnow(), attempts=Event.attempts + 1)
                          .returning(Event.id)).first()
            if n is None:
                return None
            ev = s.get(Event, event_id)
            s.query(InFlight).filter_by(key=ev.dedup_key, event_id=event_id).delete()
            return ev

    def finish_event(self, event_id: int, state: str, outcome: str = "", error: str = "") -> None:
        with self.session() as s:
            s.execute(update(Event).where(Event.id == event_id)
                      .values(state=state, outcome=outcome[:200], error=error[:2000], finished_at=utcnow()))

    def requeue_event(self, event_id: int, error: str, delay_s: float) -> None:
        from datetime import timedelta  # noqa: PLC0415

        with self.session() as s:
            s.execute(update(Event).where(Event.id == event_id).values(
                state="queued", error=error[:2000], enqueued_at=utcnow() + timedelta(seconds=delay_s)))

    def stale_events(self, older_than_s: float, stuck_processing_s: float) -> list[int]:
        """Queued events whose enqueue is old (lost or exhausted), and processing ones a dead worker left."""
        from datetime import timedelta  # noqa: PLC0415

        now = utcnow()
        with self.session() as s:
            s.execute(update(Event).where(Event.state == "processing",
                                          Event.started_at < now - timedelta(seconds=stuck_processing_s))
                      .values(state="queued", error="worker stopped while processing; requeued"))
            ids = list(s.scalars(select(Event.id).where(
                Event.state == "queued", Event.enqueued_at < now - timedelta(seconds=older_than_s))
                .order_by(Event.id).limit(10_000)))
            if ids:
                s.execute(update(Event).where(Event.id.in_(ids)).values(enqueued_at=now))
            return ids

    def get_event(self, event_id: int) -> dict[str, Any] | None:
        with self.session() as s:
            ev = s.get(Event, event_id)
            return ev.to_dict() if ev else None

    def list_events(self, project_id: int | None = None, state: str | None = None,
                    limit: int = 100) -> list[dict[str, Any]]:
        with self.session() as s:
            q = select(Event).order_by(Event.id.desc()).limit(limit)
            if project_id is not None:
                q = q.where(Event.project_id == project_id)
            if state:
                q = q.where(Event.state == state)
            return [e.to_dict() for e in s.scalars(q)]

    # -- retrain coalescing
    def request_retrain(self, project_id: int) -> bool:
        """Set the project's retrain flag; True if it was not set (the caller should enqueue a retrain)."""
        with self.session() as s:
            return s.execute(update(Project).where(Project.id == project_id, Project.retrain_requested.is_(False))
                             .values(retrain_requested=True).returning(Project.id)).first() is not None

    def take_retrain_request(self, project_id: int) -> bool:
        """Clear the project's retrain flag; True if it was set. A worker uses begin_run, which also opens the run."""
        with self.session() as s:
            return s.execute(update(Project).where(Project.id == project_id, Project.retrain_requested.is_(True))
                             .values(retrain_requested=False).returning(Project.id)).first() is not None

    def begin_run(self, project_id: int, worker: str) -> int | None:
        """Take the project's retrain request and open a training run for it, in one transaction, so a worker
        killed at any moment leaves either the request or an open run (which recover_runs turns back into the
        request). None when no retrain is requested."""
        with self.session() as s:
            taken = s.execute(update(Project).where(Project.id == project_id, Project.retrain_requested.is_(True))
                              .values(retrain_requested=False, training_since=utcnow())
                              .returning(Project.id)).first()
            return None if taken is None else self._open_run(s, project_id, worker)

    def start_run(self, project_id: int, worker: str) -> int:
        """Open a training run whether or not a retrain was requested (the project shows as training)."""
        with self.session() as s:
            s.execute(update(Project).where(Project.id == project_id).values(training_since=utcnow()))
            return self._open_run(s, project_id, worker)

    @staticmethod
    def _open_run(s: Any, project_id: int, worker: str) -> int:
        run = TrainingRun(project_id=project_id, worker=worker)
        s.add(run)
        s.flush()
        return run.id

    def finish_run(self, run_id: int, outcome: str) -> None:
        """Close the run; the project stops showing as training in the same transaction."""
        with self.session() as s:
            run = s.get(TrainingRun, run_id)
            run.finished_at, run.outcome = utcnow(), outcome[:200]
            s.execute(update(Project).where(Project.id == run.project_id).values(training_since=None))

    def recover_runs(self, is_dead: Callable[[str, datetime], bool]) -> list[int]:
        """Close the unfinished training runs whose worker ``is_dead(worker, started_at)`` (killed mid-run): the
        run is marked interrupted, the project's retrain request restored (so the work resumes) and the version row
        the run had allocated but not yet filled is marked failed. Returns the projects to retrain."""
        out = []
        with self.session() as s:
            for run in s.scalars(select(TrainingRun).where(TrainingRun.finished_at.is_(None))).all():
                if not is_dead(run.worker, run.started_at):
                    continue
                run.finished_at, run.outcome = utcnow(), f"interrupted: worker {run.worker} stopped during the run"
                p = s.get(Project, run.project_id)
                p.retrain_requested, p.training_since = True, None
                for mv in s.scalars(select(ModelVersion).where(
                        ModelVersion.project_id == run.project_id, ModelVersion.path == "",
                        ModelVersion.status.in_(UNSAVED), ModelVersion.created_at >= run.started_at)):
                    mv.status, mv.reason = "failed", "interrupted before its files were saved (the worker stopped)"
                out.append(run.project_id)
        return sorted(set(out))

    def fail_orphan_versions(self, project_id: int | None, older_than_s: float = 60.0) -> int:
        """Version rows allocated but never given files (their run failed to write or record them, and the database
        refused even the failure note), older than ``older_than_s`` (a save in progress is seconds old): failed.
        ``project_id`` None: every project (the sweep)."""
        from datetime import timedelta  # noqa: PLC0415

        with self.session() as s:
            rows = s.execute(update(ModelVersion).where(
                true() if project_id is None else ModelVersion.project_id == project_id,  # None: every project
                ModelVersion.path == "", ModelVersion.status.in_(UNSAVED),
                ModelVersion.created_at < utcnow() - timedelta(seconds=older_than_s))
                .values(status="failed", reason="its files or record could not be written (see the training run)")
                .returning(ModelVersion.id)).all()
        return len(rows)

    def prune_versions(self, project_id: int, keep_rejected: int, rejected_hours: float,
                       keep_retired: int) -> list[tuple[int, str]]:
        """Versions whose files can go: rejected ones beyond the newest ``keep_rejected`` or older than
        ``rejected_hours``, retired ones beyond the newest ``keep_retired``; never the champion. Their rows stay
        (metrics, reason) with no path and a note in the reason; returns (version, folder) of each, for the caller
        to delete."""
        from datetime import timedelta  # noqa: PLC0415

        now = utcnow()
        out: list[tuple[int, str]] = []
        with self.session() as s:
            p = s.get(Project, project_id)
            for status, keep, max_age in (("rejected", keep_rejected, timedelta(hours=rejected_hours)),
                                          ("retired", keep_retired, None)):
                rows = list(s.scalars(select(ModelVersion).where(
                    ModelVersion.project_id == project_id, ModelVersion.status == status, ModelVersion.path != "",
                    ModelVersion.id != (p.champion_id or 0)).order_by(ModelVersion.version.desc())))
                for i, mv in enumerate(rows):
                    if i >= keep or (max_age is not None and mv.created_at < now - max_age):
                        out.append((mv.version, mv.path))
                        why = f"beyond the newest {keep} {status}" if i >= keep else \
                            f"{status} more than {rejected_hours:g} h ago"
                        mv.path, mv.reason = "", f"{mv.reason or ''} [files pruned: {why}]"[:4000]
        return out

    def fail_version(self, version_id: int, reason: str) -> None:
        """A version whose files could not be written: never champion, never downloadable; the reason says why."""
        with self.session() as s:
            s.execute(update(ModelVersion).where(ModelVersion.id == version_id, ModelVersion.path == "")
                      .values(status="failed", reason=reason[:1000]))

    def retrain_pending(self, project_id: int) -> bool:
        with self.session() as s:
            return bool(s.scalar(select(Project.retrain_requested).where(Project.id == project_id)))

    # -- worker heartbeats
    def worker_beat(self, worker_id: str, *, queues: str = "", families: str = "", started_at: datetime | None = None,
                    jobs_done: int | None = None) -> None:
        """Record that the worker ``worker_id`` is alive (the first beat: it is ready, at ``started_at`` it started).
        A first beat also forgets workers not seen for a day, so the table stays small."""
        from datetime import timedelta  # noqa: PLC0415

        from sqlalchemy import delete  # noqa: PLC0415

        now = utcnow()
        with self.session() as s:
            w = s.get(Worker, worker_id)
            if w is None:
                s.execute(delete(Worker).where(Worker.last_seen < now - timedelta(days=1)))
                s.add(Worker(id=worker_id, queues=queues[:200], families=families[:200],
                             started_at=started_at or now, ready_at=now, last_seen=now, jobs_done=jobs_done or 0))
            else:
                w.last_seen, w.stopped_at = now, None
                if jobs_done is not None:
                    w.jobs_done = jobs_done

    def worker_stopped(self, worker_id: str) -> None:
        with self.session() as s:
            w = s.get(Worker, worker_id)
            if w is not None:
                w.stopped_at = w.last_seen = utcnow()

    def workers(self, alive_within_s: float) -> list[dict[str, Any]]:
        """The workers seen in the last day, newest first; ``alive``: seen within ``alive_within_s``, not stopped."""
        with self.session() as s:
            return [w.to_dict(alive_within_s) for w in s.scalars(select(Worker).order_by(Worker.ready_at.desc()))]

    # -- summaries for the API
    def project_summary(self, project_id: int) -> dict[str, Any] | None:
        with self.session() as s:
            p = s.get(Project, project_id)
            if p is None:
                return None
            n_docs = s.scalar(select(func.count()).select_from(Document).where(Document.project_id == p.id))
            labels = current_labels(s, p.id)
            champion = s.get(ModelVersion, p.champion_id) if p.champion_id else None
            n_up = s.scalar(select(func.count()).select_from(Upload).where(Upload.project_id == p.id))
            acc = s.execute(select(Upload.accepted, func.count()).where(Upload.project_id == p.id,
                                                                       Upload.accepted.is_not(None))
                            .group_by(Upload.accepted)).all()
            acceptance = self._acceptance(s, p.id)
            by_state = dict(s.execute(select(Event.state, func.count()).where(Event.project_id == p.id)
                                      .group_by(Event.state)).all())
            return {"id": p.id, "platform": p.platform, "owner": p.owner, "name": p.name,
                    "label": {"name": p.label_name, "id": p.label_id, "type": p.label_type,
                              "scheme": "multilabel" if p.label_type == "multilabel" else "single",
                              "labels": [n for _, n in p.label_ids] if p.label_ids else None},
                    "documents": n_docs, "labels": len(labels),
                    "events": by_state, "uploads": n_up,
                    "prelabels_reviewed": {"accepted": dict(acc).get(True, 0), "changed": dict(acc).get(False, 0)},
                    "acceptance": acceptance,
                    "champion": champion.to_dict() if champion else None,
                    "retrain_requested": p.retrain_requested, "training": p.training_since is not None,
                    "last_reconcile": p.last_reconcile,
                    # documents whose sentence embedding is stored, of all (families embed, hybrid; else None)
                    "embedding": p.embedding,
                    # per round: the share of the pool's predictions that changed (model/stopping.py)
                    "stability": list((p.schedule or {}).get("stability", []))}

    @staticmethod
    def _acceptance(s: Any, project_id: int, rounds: int = ACCEPTANCE_ROUNDS) -> dict[str, Any]:
        """How many pre-labels people kept as they were, of those they labelled: per kind of pick (``learn``,
        ``review``, ``audit``, ``cold_start``: model/names.mode_of) and per round (the model version that uploaded
        them; the newest ``rounds``), each ``{"accepted", "reviewed", "rate"}``. One grouped query."""
        rows = s.execute(select(ModelVersion.version, Upload.strategy, Upload.accepted, func.count())
                         .join(ModelVersion, ModelVersion.id == Upload.model_version_id)
                         .where(Upload.project_id == project_id, Upload.accepted.is_not(None))
                         .group_by(ModelVersion.version, Upload.strategy, Upload.accepted)).all()

        def add(into: dict[str, Any], key: Any, kept: bool, n: int) -> None:
            cell = into.setdefault(key, {"accepted": 0, "reviewed": 0})
            cell["accepted"] += n if kept else 0
            cell["reviewed"] += n

        by_mode: dict[str, Any] = {}
        by_round: dict[int, Any] = {}
        for version, strategy, kept, n in rows:
            add(by_mode, mode_of(strategy), kept, n)
            add(by_round, version, kept, n)
            add(by_round[version].setdefault("by_mode", {}), mode_of(strategy), kept, n)
        for cell in [*by_mode.values(), *by_round.values(), *(m for r in by_round.values()
                                                              for m in r.get("by_mode", {}).values())]:
            cell["rate"] = round(cell["accepted"] / cell["reviewed"], 4) if cell["reviewed"] else None
        return {"by_mode": by_mode,
                "by_round": [{"version": v, **by_round[v]} for v in sorted(by_round)[-rounds:]]}

    def document_known(self, project_id: int, platform_id: str) -> bool:
        """Whether the project has this platform document stored (one indexed lookup)."""
        with self.Session() as s:
            return s.scalar(select(Document.id).where(Document.project_id == project_id,
                                                      Document.platform_id == platform_id).limit(1)) is not None

    def project_ids(self) -> list[int]:
        with self.session() as s:
            return list(s.scalars(select(Project.id).order_by(Project.id)))

    def list_projects(self) -> list[dict[str, Any]]:
        with self.session() as s:
            ids = list(s.scalars(select(Project.id).order_by(Project.id)))
        return [self.project_summary(i) for i in ids]  # type: ignore[misc]

    def list_models(self, project_id: int) -> list[dict[str, Any]]:
        with self.session() as s:
            return [m.to_dict() for m in s.scalars(select(ModelVersion).where(ModelVersion.project_id == project_id)
                                                  .order_by(ModelVersion.version))]

    def get_version(self, project_id: int, version: int) -> dict[str, Any] | None:
        with self.session() as s:
            mv = s.scalar(select(ModelVersion).filter_by(project_id=project_id, version=version))
            return mv.to_dict(full=True) if mv else None

    def promote(self, project_id: int, version: int, reason: str) -> dict[str, Any]:
        """Make ``version`` the champion (a rollback when it is older); the champion it replaces is retired."""
        with self.session() as s:
            mv = s.scalar(select(ModelVersion).filter_by(project_id=project_id, version=version))
            if mv is None:
                raise KeyError(f"project {project_id} has no version {version}")
            if not mv.path:
                raise ValueError(f"version {version} has no model files (status {mv.status}); it cannot serve")
            p = s.get(Project, project_id)
            if p.champion_id and p.champion_id != mv.id:
                old = s.get(ModelVersion, p.champion_id)
                old.status = "retired"
            mv.status, mv.reason = "champion", reason
            p.champion_id = mv.id
            return mv.to_dict()


def _insert(engine: Any) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_nothing`` (SQLite and PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # noqa: PLC0415
    else:
        from sqlalchemy.dialects.sqlite import insert  # noqa: PLC0415
    return insert


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, busy_timeout_s: float = 30.0) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer: web and worker share the file
    cur.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL keeps it consistent
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()

