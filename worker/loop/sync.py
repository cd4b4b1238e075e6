"""Sync and reconciliation: take over what the platform holds and prelabel has not seen.

``sync_project`` imports documents prelabel does not know yet (candidates for pre-labelling, with any ground truth
they carry). ``reconcile`` also compares labels (lost webhooks, prelabel down): labels added or changed, and
removals (unconfirmed or deleted documents). Both go through ``Platform.list_documents`` / ``list_labelled``.
"""
from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from annotation_client import EventRejected, Listed, NotFound, Platform, ProjectRef, Reading, Scheme, TooLarge
from formats.errors import FormatError
from storage import Document, Project, current_labels, latest_label, text_hash, utcnow

if TYPE_CHECKING:
    from . import Loop

logger = logging.getLogger(__name__)


class Sync:
    def __init__(self, loop: "Loop") -> None:
        self.loop = loop

    def sync_project(self, project_id: int, force: bool = False) -> int:
        """Import documents of the platform project that prelabel has not seen (text + ground truth), at most once
        per SYNC_INTERVAL_S unless ``force``. Returns how many."""
        platform, ref = self.loop.project(project_id)
        if not platform.lists_documents:
            return 0
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            if not force and p.last_sync_at and utcnow() - p.last_sync_at < timedelta(
                    seconds=self.loop.settings.sync_interval_s):
                return 0
            known = set(s.scalars(select(Document.platform_id).where(Document.project_id == project_id,
                                                                      Document.platform_id.is_not(None))))
        if platform.listing_is_complete:  # the listing carries every document with its labels: reconcile it
            return self.reconcile(project_id)["new_documents"]
        scheme = self.loop.ingest.scheme(project_id)
        where = f"sync {ref.owner}/{ref.name}"
        n = 0
        for listed in platform.list_documents(ref):
            if listed.doc_id in known:
                continue
            try:
                reading = listed.reading or platform.read_document(ref, listed.doc_id, scheme)
                text = reading.text if reading.text is not None else platform.read_text(ref, listed.doc_id, False)[0]
            except NotFound:
                continue
            except (FormatError, EventRejected) as exc:  # e.g. over MAX_TEXT_BYTES: the others are imported
                logger.warning("%s: skipping %s: %s", where, listed.doc_id, exc)
                continue
            if reading.invalid:
                logger.warning("%s: label of %s ignored: %s", where, listed.doc_id, reading.invalid)
            if self._import(project_id, scheme, listed, reading, text, where) is not None:
                n += 1
            known.add(listed.doc_id)
        with self.loop.store.session() as s:
            s.get(Project, project_id).last_sync_at = utcnow()
        if n:
            logger.info("%s: imported %d new documents", where, n)
        return n

    def _import(self, project_id: int, scheme: Scheme, listed: Listed, reading: Reading, text: str,
                where: str) -> bool | None:
        """Store a new document and its valid label; None when another worker (or an event) stored it meanwhile,
        else whether a label was stored."""
        try:
            with self.loop.store.session() as s:
                doc = Document(project_id=project_id, platform_id=listed.doc_id, filename=listed.filename, text=text,
                               text_hash=text_hash(text), folder=listed.folder or None,
                               is_test=self.loop.ingest.in_test_folder(listed.folder),
                               platform_updated=listed.updated or None)
                s.add(doc)
                s.flush()
                if reading.value is None or reading.invalid:
                    return False
                try:
                    if scheme.kind == "single":
                        self.loop.ingest.check_stored_type(s, project_id, scheme, reading.value)
                    return self.loop.ingest.set_label(s, project_id, doc, reading.value, reading.who, None,
                                                      annotation_id=reading.annotation_id)
                except EventRejected as exc:
                    logger.warning("%s: label of %s ignored: %s", where, listed.doc_id, exc)
                    return False
        except IntegrityError:  # an event (or another worker's sync) stored it meanwhile: theirs stands
            return None

    def reconcile(self, project_id: int) -> dict[str, Any]:
        """Compare the platform with the store and take over what differs. Returns counts; ``recovered`` is the
        number of labels that changed in the store.

        A document is read again when its change stamp differs from the one last read, when it holds ground truth
        on the platform but not here, or when it holds a label here but is not listed as labelled there (deleted or
        unconfirmed: a complete listing says deleted without a read). A listing that carries the labels (Label
        Studio's export) is compared whole, and its new documents are imported here; otherwise sync does that."""
        platform, ref = self.loop.project(project_id)
        counts = {"new_documents": 0, "labels_added": 0, "labels_changed": 0, "labels_removed": 0, "invalid": 0}
        if not platform.lists_documents:
            return {**counts, "recovered": 0, "listed": 0, "documents_checked": 0}
        if not platform.listing_is_complete:
            counts["new_documents"] = self.sync_project(project_id, force=True)
        scheme = self.loop.ingest.scheme(project_id, refresh=True)
        platform, ref = self.loop.project(project_id)
        listing = platform.list_labelled(ref, scheme)
        with self.loop.store.session() as s:
            rows = list(s.scalars(select(Document).where(Document.project_id == project_id,
                                                         Document.platform_id.is_not(None))))
            docs = {d.platform_id: d.platform_updated for d in rows}
            imported = {d.platform_id for d in rows if d.source == "platform"}  # not corpus samples prelabel uploaded
            labelled = {d.platform_id for d, _, _ in current_labels(s, project_id)}
        where = f"reconcile {platform.name} project {ref.owner}/{ref.name}"
        for key, listed in listing.items():  # documents the platform holds and prelabel does not
            if key not in docs and listed.reading is not None and listed.reading.text is not None:
                if listed.reading.invalid:
                    counts["invalid"] += 1
                    logger.warning("%s: %s skipped: %s", where, key, listed.reading.invalid)
                    continue
                stored = self._import(project_id, scheme, listed, listed.reading, listed.reading.text, where)
                if stored is not None:
                    docs[key] = listed.updated or None
                    imported.add(key)
                    counts["new_documents"] += 1
                    counts["labels_added"] += int(bool(stored))
        todo = [(k, v) for k, v in listing.items() if k in docs and (
            v.reading is not None or k not in labelled or v.updated != docs[k])]
        gone = sorted(k for k in labelled if k not in listing and k in docs
                      and (k in imported or not platform.listing_is_complete))
        counts["documents_checked"] = len(todo) + len(gone)
        for key, listed in todo + [(k, None) for k in gone]:
            self._compare(project_id, platform, ref, scheme, key, listed, counts, where)
        counts["recovered"] = counts["labels_added"] + counts["labels_changed"] + counts["labels_removed"]
        counts["listed"] = len(listing)
        with self.loop.store.session() as s:
            p = s.get(Project, project_id)
            p.last_reconcile = {**counts, "at": utcnow().isoformat() + "Z"}
            p.last_sync_at = utcnow()
        if counts["recovered"] or counts["new_documents"]:
            logger.info("%s: %s", where, json.dumps(counts))
        return counts

    def _compare(self, project_id: int, platform: Platform, ref: ProjectRef, scheme: Scheme, key: str,
                 listed: Listed | None, counts: dict[str, int], where: str) -> None:
        """Read one document (unless the listing carried it) and store its label when it differs."""
        if listed is None and platform.listing_is_complete:
            reading: Reading | None = Reading(key, None)  # no longer listed: deleted on the platform
        else:
            try:
                reading = (listed.reading if listed is not None else None) or platform.read_document(ref, key, scheme)
            except NotFound:
                reading = Reading(key, None)
            except (FormatError, TooLarge) as exc:
                reading = Reading(key, None, invalid=str(exc))
        if reading.invalid:
            counts["invalid"] += 1
            logger.warning("%s: %s skipped: %s", where, key, reading.invalid)
            return
        with self.loop.store.session() as s:
            doc = s.scalar(select(Document).filter_by(project_id=project_id, platform_id=key))
            old = latest_label(s, doc.id)
            old_value = old.value if old else None
            try:
                if reading.value is not None and scheme.kind == "single":
                    self.loop.ingest.check_stored_type(s, project_id, scheme, reading.value)
            except EventRejected as exc:
                counts["invalid"] += 1
                logger.warning("%s: %s skipped: %s", where, key, exc)
                return
            if self.loop.ingest.set_label(s, project_id, doc, reading.value, reading.who, None,
                                          annotation_id=reading.annotation_id):
                counts["labels_added" if old_value is None else "labels_removed" if reading.value is None
                       else "labels_changed"] += 1
            if listed is not None and listed.updated:
                doc.platform_updated = listed.updated
