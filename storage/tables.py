"""The tables (SQLAlchemy 2 ORM models) and the reads every step shares: a document's current label, values."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func,
                        select)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from model.names import RANKED_STRATEGIES

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
    # the sentence embeddings' progress, from the worker's background warm-up: {"embedded", "of", "at"}
    embedding: Mapped[dict[str, Any] | None] = mapped_column(JSON)
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
    # drawn uniformly at random from the pool for the quality estimate (model/estimate.py), never by active learning
    audit: Mapped[bool | None] = mapped_column(Boolean, default=False)
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


class Worker(Base):
    """A worker process's heartbeat: written when it is ready to take jobs and every WORKER_HEARTBEAT_S after,
    so /healthz, the dashboard and the metrics can say whether anyone is working the queue."""

    __tablename__ = "workers"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # host:pid:incarnation, as in training_runs
    queues: Mapped[str] = mapped_column(String(200), default="")
    families: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)  # the process started
    ready_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)  # it could take jobs
    last_seen: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime)  # a clean shutdown; a killed one just goes quiet
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)

    def to_dict(self, alive_within_s: float) -> dict[str, Any]:
        age = (utcnow() - self.last_seen).total_seconds()
        return {"id": self.id, "queues": self.queues.split(",") if self.queues else [],
                "families": self.families.split(",") if self.families else [],
                "alive": self.stopped_at is None and age <= alive_within_s, "last_seen": _iso(self.last_seen),
                "seconds_since_seen": round(age, 1), "started_at": _iso(self.started_at),
                "ready_at": _iso(self.ready_at), "ready_after_s": round(
                    (self.ready_at - self.started_at).total_seconds(), 2),
                "stopped_at": _iso(self.stopped_at), "jobs_done": self.jobs_done}


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
               "estimate": m.get("estimate"),  # on the whole pool, with its interval (model/estimate.py)
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
    # where an upload replaces the document's annotations (tagtog): when its state was read, what was replaced,
    # and whether a person's save was caught in between (then it is never pre-labelled again by prelabel)
    read_at: Mapped[datetime | None] = mapped_column(DateTime)
    replaced: Mapped[str | None] = mapped_column(Text)
    overwrote: Mapped[str | None] = mapped_column(String(16))  # restored | flagged


class Prediction(Base):
    """The champion's probabilities for an unlabelled document, stored so the web process can rank documents
    (``GET .../next``) without loading a model."""

    __tablename__ = "predictions"
    # next's default orders, read through an index: top n without reading the pool (RANKED_STRATEGIES)
    __table_args__ = tuple(Index(f"ix_predictions_{name}", "project_id", f"rank_{name}")
                           for name in RANKED_STRATEGIES)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(Integer)
    proba: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"classes": [...], "p": [...]}
    # each strategy's score of the document (model/query.scores_for: higher = pick first), computed once per
    # champion when the pool is scored; None in rows written before these columns existed
    rank_margin: Mapped[float | None] = mapped_column(Float)
    rank_least_confidence: Mapped[float | None] = mapped_column(Float)
    rank_entropy: Mapped[float | None] = mapped_column(Float)
    rank_confident: Mapped[float | None] = mapped_column(Float)


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() + "Z" if d else None


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


def dumps_value(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


class Suspect(Base):
    """A person's label the round's out-of-fold model confidently disagrees with (model/suspects.py), most likely
    wrong first (``rank``). Rewritten each round; a row whose label was re-confirmed (saved again by a person, or
    dismissed through the API) keeps ``dismissed_at`` and is never listed again for that label value."""

    __tablename__ = "suspects"
    __table_args__ = (Index("ix_suspects_project_rank", "project_id", "rank"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"), index=True)
    label_id: Mapped[int] = mapped_column(Integer)  # the label judged (a newer one is a re-confirmation)
    given: Mapped[str] = mapped_column(Text)  # JSON: the label
    predicted: Mapped[str] = mapped_column(Text)  # JSON: the model's
    probability: Mapped[float] = mapped_column(Float)  # calibrated, of ``predicted``
    quality: Mapped[float] = mapped_column(Float)  # the label's self-confidence
    rank: Mapped[int] = mapped_column(Integer)
    version: Mapped[int | None] = mapped_column(Integer)  # the round's version
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    dismissed_at: Mapped[datetime | None] = mapped_column(DateTime)
    dismissed_by: Mapped[str | None] = mapped_column(String(200))


class CorpusMap(Base):
    """The project's map (model/corpus_map.py), computed by the worker once per champion and only read by the
    web process: ``points`` is a list of [x, y, document id, platform id, label, predicted, text start]."""

    __tablename__ = "corpus_maps"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    version: Mapped[int | None] = mapped_column(Integer)  # the champion it was drawn for
    computed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    n_documents: Mapped[int] = mapped_column(Integer, default=0)  # in the project, of which ``points`` is a sample
    points: Mapped[list[Any]] = mapped_column(JSON)
