"""Ingest: one stored event -> the document's ground-truth label in the store, and the project's label scheme.

The platform says what an event asks for (``Platform.plan_event``) and reads the document back; this module
stores what it read. Webhook bodies are never trusted for labels.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from annotation_client import EventRejected, NotFound, Platform, ProjectRef, Reading, Scheme
from formats.errors import FormatError
from model.names import class_name
from storage import Document, Event, Label, ModelVersion, Project, Upload, dumps_value, latest_label, text_hash

if TYPE_CHECKING:
    from . import Loop

logger = logging.getLogger(__name__)
RETRAIN_REQUESTED = "retrain requested"
__all__ = ["RETRAIN_REQUESTED", "EventRejected", "Ingest", "check_value"]


def same_class(a: str, b: str) -> bool:
    """Two stored values (JSON) name the same class(es): a boolean and its string spelling are one class."""
    def norm(v: str) -> Any:
        x = json.loads(v)
        return sorted(class_name(c) for c in x) if isinstance(x, list) else class_name(x)
    return norm(a) == norm(b)


def check_value(scheme: Scheme, value: Any, previous: Any = None) -> None:
    """EventRejected unless ``value`` fits a single-label scheme's type. With no type known (only a legend), the
    first stored value (``previous``) fixes it."""
    label, typ = scheme.ids[0], scheme.type
    if typ is None:
        typ = "boolean" if isinstance(previous, bool) else "enum" if previous is not None else (
            "boolean" if isinstance(value, bool) else "enum")
    if typ == "boolean" and not isinstance(value, bool):
        raise EventRejected(f"label {label} is boolean; got {value!r} ({type(value).__name__})")
    if typ == "enum" and not isinstance(value, str):
        raise EventRejected(f"label {label} is an enum of strings; got {value!r} ({type(value).__name__})")


class Ingest:
    def __init__(self, loop: "Loop") -> None:
        self.loop = loop

    # -- the label scheme ----------------------------------------------------------------------------------
    def scheme(self, project_id: int, refresh: bool = False) -> Scheme:
        """The project's label scheme, kept on the project row. ``refresh`` re-reads the platform's definitions:
        a label added there extends a multilabel scheme, a removed one stops being trained on."""
        return self.scheme_change(project_id, refresh)[0]

    def scheme_change(self, project_id: int, refresh: bool = False
                      ) -> tuple[Scheme, tuple[list[str], list[str]] | None]:
        """The scheme, and (before, after) label ids when reading it changed the stored one."""
        platform, ref = self.loop.project(project_id)
        scheme = platform.read_scheme(ref, refresh)
        if scheme.kind == "single" and scheme.type is None:  # only a legend (no settings export): the values
            typ = self.type_of_values(project_id)                # people stored say the type
            if typ is not None:
                record = None if scheme.record is None else {**scheme.record, "label_type": typ}
                scheme = replace(scheme, type=typ, record=record)
                if record is None:
                    with self.loop.store.session() as s:
                        s.get(Project, project_id).label_type = typ
        if scheme.record is None:
            return scheme, None
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            before = (p.label_type, [c for c, _ in p.label_ids or []])
            p.label_type, p.label_id, p.label_ids = (scheme.record["label_type"], scheme.record["label_id"],
                                                     scheme.record["label_ids"])
            after = (p.label_type, [c for c, _ in p.label_ids or []])
        if platform.retrain_on_scheme_change and before[0] is not None and before != after:
            logger.info("project %d: label scheme changed %s -> %s; retrain requested", project_id, before, after)
            self.loop.store.request_retrain(project_id)
            return scheme, (before[1], after[1])
        return scheme, None

    def type_of_values(self, project_id: int) -> str | None:
        """boolean or enum, from the first label value stored (JSON true/false, or a string); None before any."""
        with self.loop.store.session() as s:
            prev = s.scalar(select(Label.value).where(Label.project_id == project_id, Label.value.is_not(None))
                            .order_by(Label.id).limit(1))
        if prev is None:
            return None
        v = json.loads(prev)
        return "boolean" if isinstance(v, bool) else "enum" if isinstance(v, str) else None

    # -- events --------------------------------------------------------------------------------------------
    def process_event(self, event_id: int) -> str:
        """Do what a stored event asks (usually: read its document back and store its ground truth). Returns the
        outcome. Raises PlatformUnavailable (the caller retries later) and EventRejected (the event fails)."""
        with self.loop.store.session() as s:
            ev = s.get(Event, event_id)
            project_id, ref, member, kind = ev.project_id, ev.doc_id, ev.member, ev.kind
        platform, _ = self.loop.project(project_id)
        plan = platform.plan_event(kind, ref, member)
        if plan.action == "ignore":
            return plan.reason
        if plan.action == "reconcile":
            r = self.loop.sync.reconcile(project_id)
            return f"reconciled: {r['recovered']} label(s) recovered, {r['new_documents']} new document(s)"
        if plan.action == "refresh_scheme":
            _, changed = self.scheme_change(project_id, refresh=True)
            if changed is not None:
                return f"label config changed ({changed[0]} -> {changed[1]}); {RETRAIN_REQUESTED}"
            return "label config unchanged"
        if plan.action == "retrain":
            self.loop.store.request_retrain(project_id)
            return RETRAIN_REQUESTED
        if plan.action == "read_annotated":  # the documents whose labels came from these annotations
            with self.loop.store.session() as s:
                docs = sorted(set(s.scalars(select(Label.document_id).where(
                    Label.project_id == project_id, Label.annotation_id.in_(plan.annotation_ids)))))
                doc_ids = [s.get(Document, d).platform_id for d in docs]
            outcomes = [self.ingest_document(project_id, d, event_id) for d in doc_ids if d]
            return f"{len(outcomes)} {platform.noun}(s) re-read: {', '.join(outcomes) or 'none known'}"[:200]
        return "; ".join(self.ingest_document(project_id, d, event_id) for d in plan.doc_ids)

    def ingest_document(self, project_id: int, doc_id: str, event_id: int | None) -> str:
        """Read one document back from its platform and store its ground truth (or its removal)."""
        scheme = self.scheme(project_id)
        platform, ref = self.loop.project(project_id)
        try:
            reading = platform.read_document(ref, doc_id, scheme)
            if reading.invalid:  # the definitions may have grown since they were read
                scheme = self.scheme(project_id, refresh=True)
                platform, ref = self.loop.project(project_id)
                reading = platform.read_document(ref, doc_id, scheme)
        except NotFound:
            return self.document_gone(project_id, doc_id, event_id)
        except FormatError as exc:
            raise EventRejected(str(exc)) from None
        if reading.invalid:
            raise EventRejected(reading.invalid)
        if reading.value is None and event_id is not None:
            caught = self.caught_by_upload(project_id, platform, ref, reading, event_id)
            if caught:
                return caught
        changed = self.store_reading(project_id, platform, ref, scheme, reading, event_id)
        if not changed:
            return "unchanged"
        return "label removed" if reading.value is None else f"labelled {platform.describe_value(reading.value)}"

    def caught_by_upload(self, project_id: int, platform: Platform, ref: ProjectRef, reading: Reading,
                         event_id: int) -> str:
        """A person's save received after prelabel read the document for an upload, while the document now shows
        that upload: the upload landed over the save (tagtog has no conditional write). What the upload replaced
        is put back, the document is never pre-labelled by prelabel again, and the event says so (counted in
        /metrics as prelabel_person_saves_overwritten_total). Returns the outcome, or "" when nothing was caught."""
        with self.loop.store.session() as s:
            received, source = s.execute(select(Event.received_at, Event.source).where(Event.id == event_id)).one()
            if source == "API":  # prelabel's own upload coming back (IGNORE_API_SOURCE=false)
                return ""
            up = s.execute(select(Upload, ModelVersion.version).join(ModelVersion, Upload.model_version_id ==
                                                                     ModelVersion.id)
                           .join(Document, Upload.document_id == Document.id)
                           .where(Document.project_id == project_id, Document.platform_id == reading.doc_id)
                           .order_by(Upload.id.desc()).limit(1)).first()
            if up is None or received is None:
                return ""
            upload, version = up
            if upload.read_at is None or received < upload.read_at or not platform.carries_upload(reading, version):
                return ""
            upload_id, replaced, ms = upload.id, upload.replaced, (upload.uploaded_at - received).total_seconds() * 1e3
        restored = bool(replaced) and platform.restore_overwritten(ref, reading.doc_id, version, replaced)
        outcome = (f"overwritten: prelabel v{version}'s upload landed {ms:+.0f} ms after this person's save was "
                   f"received; " + ("the annotations it replaced were put back" if restored else "nothing to put back")
                   + "; the person's change must be redone")
        with self.loop.store.session() as s:
            s.get(Upload, upload_id).overwrote = "restored" if restored else "flagged"  # the event says the rest
        logger.warning("%s %s: %s", platform.noun, reading.doc_id, outcome)
        return outcome[:200]

    def store_reading(self, project_id: int, platform: Platform, ref: ProjectRef, scheme: Scheme,
                      reading: Reading, event_id: int | None) -> bool:
        """Store a reading: the document (text fetched when it is new) and its label. True when the label changed."""
        def check(s: Any) -> None:
            if reading.value is not None and scheme.kind == "single":
                self.check_stored_type(s, project_id, scheme, reading.value)

        def new_document() -> Document:
            text, folder = (reading.text, None) if reading.text is not None else platform.read_text(
                ref, reading.doc_id, bool(self.loop.settings.test_folder))
            return Document(project_id=project_id, platform_id=reading.doc_id, text=text, text_hash=text_hash(text),
                            folder=folder, is_test=self.in_test_folder(folder))

        return self.store_label(project_id, reading.doc_id, new_document, reading.value, reading.who, event_id,
                                annotation_id=reading.annotation_id, check=check)

    def check_stored_type(self, s: Any, project_id: int, scheme: Scheme, value: Any) -> None:
        previous = None
        if scheme.type is None:  # only the legend is known: the first label stored fixes the type
            prev = s.scalar(select(Label.value).where(Label.project_id == project_id, Label.value.is_not(None))
                            .limit(1))
            previous = json.loads(prev) if prev is not None else None
        check_value(scheme, value, previous)

    def in_test_folder(self, folder: str | None) -> bool:
        t = self.loop.settings.test_folder.strip("/")
        return bool(t and folder and (folder == t or folder.startswith(t + "/")))

    # -- labels in the store -------------------------------------------------------------------------------
    def store_label(self, project_id: int, docid: str, new_document: Callable[[], Document], value: Any,
                    who: str, event_id: int | None, annotation_id: str | None = None,
                    check: Callable[[Any], None] | None = None) -> bool:
        """Store ``value`` as the label of the project's document ``docid``, creating the document with
        ``new_document`` when it is not stored yet. True when the label changed. Two workers storing the same new
        document at once: the loser's insert fails on the unique key, its session rolls back, and the second try
        reads the winner's row (by id: what the rolled-back session loaded is detached)."""
        def once() -> bool:
            with self.loop.store.session() as s:
                if check is not None:
                    check(s)
                doc = s.scalar(select(Document).filter_by(project_id=project_id, platform_id=docid))
                if doc is None:
                    doc = new_document()
                    s.add(doc)
                    s.flush()
                return self.set_label(s, project_id, doc, value, who, event_id, annotation_id=annotation_id)

        try:
            return once()
        except IntegrityError:  # another worker stored this document meanwhile: now it is found
            return once()

    def set_label(self, s: Any, project_id: int, doc: Document, value: Any, who: str, event_id: int | None,
                  annotation_id: str | None = None) -> bool:
        """Append ``value`` to the document's label history unless it is the current one. True when it changed."""
        current = latest_label(s, doc.id)
        new = None if value is None else dumps_value(value)
        if (current.value if current else None) == new:
            if current is not None and annotation_id and current.annotation_id != annotation_id:
                current.annotation_id = annotation_id  # same value, now held by another annotation
            return False
        s.add(Label(project_id=project_id, document_id=doc.id, value=new, who=who, event_id=event_id,
                    annotation_id=annotation_id))
        if new is not None:  # a person labelled a document we pre-labelled: did they keep our suggestion?
            up = s.scalar(select(Upload).where(Upload.document_id == doc.id).order_by(Upload.id.desc()).limit(1))
            if up is not None and up.accepted is None:  # on the normalised value: "false" (a legend-only
                up.accepted = same_class(up.value, new)  # upload of old) and false are the same suggestion
        return True

    def document_gone(self, project_id: int, docid: str, event_id: int | None) -> str:
        with self.loop.store.session() as s:
            doc = s.scalar(select(Document).filter_by(project_id=project_id, platform_id=docid))
            if doc is not None:
                self.set_label(s, project_id, doc, None, "", event_id or 0)
        return "document no longer exists"

    def maybe_request_retrain(self, project_id: int) -> bool:
        """Flag the project for retraining once RETRAIN_EVERY new labels arrived. True if newly flagged."""
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            n_new = s.scalar(select(func.count()).select_from(Label).where(
                Label.project_id == project_id, Label.id > p.trained_through_label))
        if n_new < self.loop.settings.retrain_every and not (n_new and self.loop.training.new_class_seen(project_id)):
            return False  # a class seen for the first time forces a retrain, whatever RETRAIN_EVERY says
        return self.loop.store.request_retrain(project_id)
