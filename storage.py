"""The database: SQLAlchemy 2 ORM models and the few multi-step operations that must be atomic.

SQLite file by default (WAL, busy timeout), any SQLAlchemy URL (e.g. PostgreSQL) via DATABASE_URL.
"""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine,
                        event, func, select, true, update)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("platform", "owner", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    label_name: Mapped[str] = mapped_column(String(200), default="")  # configured; "" = first document label
    label_id: Mapped[str | None] = mapped_column(String(64))  # resolved from the platform's legend (m_N)
    label_type: Mapped[str | None] = mapped_column(String(32))  # boolean | enum | multilabel | None (inferred)
    label_ids: Mapped[list[Any] | None] = mapped_column(JSON)  # multilabel: [[m_N, name], ...]
    retrain_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    training_since: Mapped[datetime | None] = mapped_column(DateTime)  # set while a training run is open
    labels_at_full_fit: Mapped[int] = mapped_column(Integer, default=0)
    trained_through_label: Mapped[int] = mapped_column(Integer, default=0)  # last labels.id a model has seen
    champion_id: Mapped[int | None] = mapped_column(Integer)
    rounds: Mapped[int | None] = mapped_column(Integer, default=0)  # retrain rounds run (FAMILY_EVERY counts them)
    # {"scores": champion's validation score after each round (last 20), "trained": {family: last round}}
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_reconcile: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # counts and time of the last reconcile
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def slug(self) -> str:
        return f"{self.platform}-{self.owner}-{self.name}".replace("/", "_")


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("project_id", "platform_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    platform_id: Mapped[str | None] = mapped_column(String(600))  # None while a corpus upload is in flight
    filename: Mapped[str] = mapped_column(String(600), default="")
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(16), default="platform")  # platform | corpus
    folder: Mapped[str | None] = mapped_column(String(600))
    is_test: Mapped[bool | None] = mapped_column(Boolean, default=False)  # in the user's test set: never selects
    platform_updated: Mapped[str | None] = mapped_column(String(40))  # the platform's "updated" stamp last read
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Label(Base):
    """Append-only history of a document's ground-truth label; the latest row is current (value None = removed)."""

    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), index=True)
    value: Mapped[str | None] = mapped_column(Text)  # JSON of the platform value (true, "sport")
    who: Mapped[str] = mapped_column(String(400), default="")
    set_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    event_id: Mapped[int | None] = mapped_column(Integer)
    annotation_id: Mapped[str | None] = mapped_column(String(64), index=True)  # the platform annotation it came from


class Event(Base):
    """One accepted webhook delivery and what became of it."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    doc_id: Mapped[str] = mapped_column(String(600))
    member: Mapped[str] = mapped_column(String(200), default="master")
    source: Mapped[str] = mapped_column(String(16), default="")
    kind: Mapped[str] = mapped_column(String(32), default="")  # created | updated
    dedup_key: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)  # queued|processing|done|failed
    outcome: Mapped[str] = mapped_column(String(200), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "project_id": self.project_id, "platform": self.platform, "doc_id": self.doc_id,
                "member": self.member, "source": self.source, "kind": self.kind, "state": self.state,
                "outcome": self.outcome, "error": self.error, "attempts": self.attempts,
                "received_at": _iso(self.received_at), "started_at": _iso(self.started_at),
                "finished_at": _iso(self.finished_at)}


class TrainingRun(Base):
    """One retrain of a project by one worker: when, where and how it ended (scale-out audit: runs of a project
    never overlap, whichever machines the workers are on)."""

    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    worker: Mapped[str] = mapped_column(String(200))  # host:pid
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    outcome: Mapped[str] = mapped_column(String(200), default="")


class InFlight(Base):
    """Keys of deliveries accepted but not yet picked up: a duplicate of one of them is not enqueued again."""

    __tablename__ = "inflight"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[int] = mapped_column(Integer)


# a version row allocated before its files and record are written ("candidate": rows of earlier releases)
UNSAVED = ("saving", "candidate")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("project_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    family: Mapped[str] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(8))  # full | warm
    path: Mapped[str] = mapped_column(String(1000))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    classes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_train: Mapped[int] = mapped_column(Integer, default=0)
    n_holdout: Mapped[int] = mapped_column(Integer, default=0)
    train_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # saving (files being written), candidate|champion|rejected|retired, or failed: its files or record could not
    # be written (the reason says why)
    status: Mapped[str | None] = mapped_column(String(16), default="candidate")
    reason: Mapped[str | None] = mapped_column(Text, default="")
    test_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=dict)
    history: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=dict)  # loss per epoch, train and validation
    cv: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # k-fold cross-validation on demand

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        m = self.metrics or {}
        out = {"id": self.id, "version": self.version, "family": self.family, "mode": self.mode,
               "status": self.status, "reason": self.reason, "path": self.path, "n_train": self.n_train,
               "n_holdout": self.n_holdout, "n_labels": self.n_train + self.n_holdout,
               "train_seconds": round(self.train_seconds, 2), "accuracy": m.get("accuracy"), "f1": m.get("f1"),
               "f1_macro": m.get("f1_macro"), "dataset": m.get("dataset", "validation"),
               "classes": self.classes, "created_at": _iso(self.created_at)}
        if full:
            out.update(metrics=m, test_metrics=self.test_metrics or None, history=self.history or {}, cv=self.cv)
        return out


class Upload(Base):
    """A pre-label prelabel uploaded; ``accepted`` is filled in when a person labels that document."""

    __tablename__ = "uploads"
    __table_args__ = (UniqueConstraint("document_id", "model_version_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    value: Mapped[str] = mapped_column(Text)
    prob: Mapped[float] = mapped_column(Float)
    uploaded_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    accepted: Mapped[bool | None] = mapped_column(Boolean)
    strategy: Mapped[str | None] = mapped_column(String(40))  # the query strategy that chose the document
    score: Mapped[float | None] = mapped_column(Float)


class Prediction(Base):
    """The champion's probabilities for an unlabelled document, stored so the web process can rank documents
    (``GET .../next``) without loading a model."""

    __tablename__ = "predictions"
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(Integer)
    proba: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"classes": [...], "p": [...]}


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() + "Z" if d else None


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

    def fail_version(self, version_id: int, reason: str) -> None:
        """A version whose files could not be written: never champion, never downloadable; the reason says why."""
        with self.session() as s:
            s.execute(update(ModelVersion).where(ModelVersion.id == version_id, ModelVersion.path == "")
                      .values(status="failed", reason=reason[:1000]))

    def retrain_pending(self, project_id: int) -> bool:
        with self.session() as s:
            return bool(s.scalar(select(Project.retrain_requested).where(Project.id == project_id)))

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
            by_state = dict(s.execute(select(Event.state, func.count()).where(Event.project_id == p.id)
                                      .group_by(Event.state)).all())
            return {"id": p.id, "platform": p.platform, "owner": p.owner, "name": p.name,
                    "label": {"name": p.label_name, "id": p.label_id, "type": p.label_type,
                              "scheme": "multilabel" if p.label_type == "multilabel" else "single",
                              "labels": [n for _, n in p.label_ids] if p.label_ids else None},
                    "documents": n_docs, "labels": len(labels),
                    "events": by_state, "uploads": n_up,
                    "prelabels_reviewed": {"accepted": dict(acc).get(True, 0), "changed": dict(acc).get(False, 0)},
                    "champion": champion.to_dict() if champion else None,
                    "retrain_requested": p.retrain_requested, "training": p.training_since is not None,
                    "last_reconcile": p.last_reconcile}

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


def current_labels(s: Session, project_id: int) -> list[tuple[Document, str, int]]:
    """(document, JSON value, label id) of every document whose latest label is not a removal."""
    latest = (select(Label.document_id, func.max(Label.id).label("lid"))
              .where(Label.project_id == project_id).group_by(Label.document_id).subquery())
    rows = s.execute(select(Document, Label.value, Label.id).join(latest, latest.c.document_id == Document.id)
                     .join(Label, Label.id == latest.c.lid).where(Label.value.is_not(None))
                     .order_by(Document.id)).all()
    return [(d, v, lid) for d, v, lid in rows]


def latest_label(s: Session, document_id: int) -> Label | None:
    return s.scalar(select(Label).where(Label.document_id == document_id).order_by(Label.id.desc()).limit(1))


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


def dumps_value(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)
