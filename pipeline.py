"""The human-in-the-loop cycle, run by the worker: ingest a confirm -> retrain -> pre-label.

Each step takes ids, re-reads state from the database, and is safe to run twice: a replayed event converges to
the same rows, a retried pre-label job does not upload twice. Nothing here knows about Huey (see jobs.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from sqlalchemy import func, select

from annotation_client import (LOCAL, AnndocUpload, LabelDef, NotFound, PlatformError, PlatformUnavailable,
                               TagtogClient, make_client)
from config import Settings
from formats.corpus import parse_corpus
from model.names import class_counts, class_name
from formats.tagtog import FormatError, GroundTruthPolicy, has_human_label, is_ground_truth, with_prelabel
from storage import (Document, Event, Label, ModelVersion, Project, Store, Upload, current_labels, dumps_value,
                     latest_label, text_hash, utcnow)

logger = logging.getLogger(__name__)


class ModelWriteError(RuntimeError):
    """A trained version could not be written (disk full, database locked): nothing of it is visible, the
    champion is unchanged, and the message says what failed."""


class EventRejected(Exception):
    """The event's document cannot be used as it is (unknown label id, wrong value type): the event fails
    with this message; nothing else is affected."""


@dataclass
class TrainResult:
    version_id: int
    version: int
    metrics: dict[str, Any]
    mode: str
    status: str  # champion | rejected
    champion_id: int | None  # the version in service after this run
    deferred: tuple[str, ...] = ()  # families due this round that train on their own queue (bert)


@dataclass(frozen=True)
class Scheme:
    """A project's labels: one (binary/multiclass) or several booleans (multilabel)."""

    kind: str  # single | multilabel
    ids: tuple[str, ...]  # platform label ids (m_N)
    names: tuple[str, ...]  # their names: the class names of a multilabel model
    type: str | None  # boolean | enum | None (single: inferred from values)


def classes_of(ys: Sequence[Any]) -> list[str]:
    """The sorted classes of label rows: names, or tuples of names (multilabel)."""
    out: set[str] = set()
    for y in ys:
        out.update(y if isinstance(y, tuple) else (y,))
    return sorted(out)


def class_value(name: str, label_type: str | None) -> Any:
    """Inverse of class_name, by the label's type."""
    return json.loads(name) if label_type == "boolean" else name


def is_holdout(platform_id: str, fraction: float) -> bool:
    """A document's split is fixed by its id, so every version is scored on the same kind of held-out slice and
    a document never moves from held-out into training."""
    h = int(hashlib.sha256(platform_id.encode("utf-8")).hexdigest()[:8], 16) % 10_000
    return h < fraction * 10_000


class Loop:
    """Ties storage, the platform client and the model family together for the worker."""

    def __init__(self, settings: Settings, store: Store,
                 client_factory: Callable[[str], TagtogClient] | None = None) -> None:
        self.settings = settings
        self.store = store
        self._client_factory = client_factory or self._default_client
        self._clients: dict[str, TagtogClient] = {}
        self._label_defs: dict[int, list[LabelDef]] = {}
        self._models: dict[int, tuple[int, Any]] = {}  # project id -> (model version id, classifier in memory)
        self._corpus: tuple[float, list[str]] | None = None
        from pipeline_labelstudio import LabelStudioSide  # noqa: PLC0415

        self.ls = LabelStudioSide(self)

    def _default_client(self, platform: str) -> Any:
        return make_client(platform, **self.settings.client_kwargs(platform))

    def _platform(self, project_id: int) -> str:
        with self.store.session() as s:
            return s.get(Project, project_id).platform

    def client(self, platform: str) -> Any:
        if platform not in self._clients:
            self._clients[platform] = self._client_factory(platform)
        return self._clients[platform]

    @property
    def policy(self) -> GroundTruthPolicy:
        return GroundTruthPolicy(self.settings.ground_truth_policy)

    # -- label scheme --------------------------------------------------------------------------------------
    def label_defs(self, project: Project, refresh: bool = False) -> list[LabelDef]:
        if refresh or project.id not in self._label_defs:
            self._label_defs[project.id] = self.client(project.platform).get_label_defs(project.owner, project.name)
        return self._label_defs[project.id]

    def resolve_scheme(self, project_id: int, refresh: bool = False) -> Scheme:
        """The project's label scheme from its configured label(s) and the platform's legend.

        ``a+b+c`` configures a multilabel scheme of those boolean labels; one name, a single label; nothing:
        several boolean labels (and nothing else) form a multilabel scheme, else the first label is used.
        A multilabel scheme is re-read at each retrain (``refresh``): a label added on the platform extends it,
        a removed one stops being trained on.
        """
        with self.store.session() as s:
            p = s.get(Project, project_id)
            if p.platform == "labelstudio":
                return self.ls.scheme(project_id, refresh)
            if not refresh and p.label_type == "multilabel" and p.label_ids:
                return Scheme("multilabel", tuple(i for i, _ in p.label_ids), tuple(n for _, n in p.label_ids),
                              "boolean")
            if not refresh and p.label_id:
                return Scheme("single", (p.label_id,), (p.label_id,), p.label_type)
            defs = [d for d in self.label_defs(p, refresh=True) if d.id.startswith("m_")]
            spec = p.label_name
            if "+" in spec:
                wanted = [w.strip() for w in spec.split("+") if w.strip()]
                picks = [d for d in defs if d.name in wanted or d.id in wanted]
                missing = sorted(set(wanted) - {d.name for d in picks} - {d.id for d in picks})
                if missing:
                    raise EventRejected(f"project {p.owner}/{p.name} has no document label(s) {missing}; "
                                        f"legend: {[d.name for d in defs]}")
                multi = True
            elif spec:
                picks, multi = [d for d in defs if d.name == spec or d.id == spec], False
            else:
                booleans = [d for d in defs if d.type == "boolean"]
                multi = len(booleans) >= 2 and len(booleans) == len(defs)
                picks = booleans if multi else defs[:1]
            if not picks:
                raise EventRejected(f"project {p.owner}/{p.name} has no document label "
                                    f"{spec or '(any)'}; legend: {[d.name for d in defs]}")
            if multi:
                bad = [d.name for d in picks if d.type not in (None, "boolean")]
                if bad:
                    raise EventRejected(f"a multilabel scheme needs boolean labels; {bad} are not")
                p.label_type, p.label_id = "multilabel", None
                p.label_ids = [[d.id, d.name] for d in picks]
                return Scheme("multilabel", tuple(d.id for d in picks), tuple(d.name for d in picks), "boolean")
            d = picks[0]
            if d.type not in (None, "boolean", "enum"):
                raise EventRejected(f"document label {d.name} ({d.id}) has type {d.type}; prelabel classifies "
                                    "boolean and enum labels")
            p.label_id, p.label_type, p.label_ids = d.id, d.type, None
            return Scheme("single", (d.id,), (d.name,), d.type)

    def ground_truth_value(self, ann: Any, scheme: Scheme) -> tuple[Any, str]:
        """The document's ground-truth value under ``scheme`` (None when it has none) and who set it.

        Multilabel: the sorted names of the scheme's labels set to true on a document that counts as ground
        truth (confirmed, or by policy touched by a person); labels left unset are false. A document still
        carrying a model's pre-label in the scheme does not count.
        """
        if scheme.kind == "single":
            meta = ann.metas.get(scheme.ids[0])
            ok = meta is not None and is_ground_truth(ann, meta, self.policy)
            return (meta.value if ok else None), (",".join(meta.confidence.who) if meta is not None else "")
        metas = [(name, ann.metas.get(i)) for i, name in zip(scheme.ids, scheme.names)]
        present = [(n, m) for n, m in metas if m is not None]
        who = ",".join(sorted({w for _, m in present for w in m.confidence.who}))
        if any(m.confidence.is_ml for _, m in present):
            return None, who
        if not (ann.anncomplete or (self.policy is GroundTruthPolicy.ANNCOMPLETE_OR_USER
                                    and any(m.confidence.is_user for _, m in present))):
            return None, who
        for n, m in present:
            if not isinstance(m.value, bool):
                raise EventRejected(f"label {n} of a multilabel scheme is boolean; got {m.value!r} "
                                    f"({type(m.value).__name__})")
        return sorted(n for n, m in present if m.value is True), who

    def _check_value(self, s: Any, project: Project, defs: list[LabelDef], value: Any) -> None:
        d = next((d for d in defs if d.id == project.label_id), None)
        typ = project.label_type
        if typ is None:  # only the legend is known: the first label fixes the type
            prev = s.scalar(select(Label.value).where(Label.project_id == project.id, Label.value.is_not(None))
                            .limit(1))
            typ = "boolean" if prev is not None and isinstance(json.loads(prev), bool) else (
                "enum" if prev is not None else ("boolean" if isinstance(value, bool) else "enum"))
        if typ == "boolean" and not isinstance(value, bool):
            raise EventRejected(f"label {project.label_id} is boolean; got {value!r} ({type(value).__name__})")
        if typ == "enum":
            if not isinstance(value, str):
                raise EventRejected(f"label {project.label_id} is an enum of strings; got {value!r} "
                                    f"({type(value).__name__})")
            if d is not None and d.options and value not in d.options:
                raise EventRejected(f"label {project.label_id} has no option {value!r}; options: {list(d.options)}")

    # -- 1. ingest one webhook event -----------------------------------------------------------------------
    def process_event(self, event_id: int) -> str:
        """Fetch the document an event names and store its ground-truth label. Returns the outcome.

        Raises PlatformUnavailable (the caller retries later) and EventRejected (the event fails).
        """
        with self.store.session() as s:
            ev = s.get(Event, event_id)
            project = s.get(Project, ev.project_id)
            docid, member, kind = ev.doc_id, ev.member, ev.kind
        if project.platform == "labelstudio":
            return self.ls.process_event(event_id, project.id, kind, docid)
        if kind == "reconcile":
            r = self.reconcile(project.id)
            return f"reconciled: {r['recovered']} label(s) recovered, {r['new_documents']} new document(s)"
        if member != self.settings.tagtog_member:
            return f"ignored: member version {member!r} (prelabel reads {self.settings.tagtog_member!r})"
        scheme = self.resolve_scheme(project.id)
        client = self.client(project.platform)
        try:
            ann = client.get_annjson(project.owner, project.name, docid, member)
        except NotFound:
            return self._document_gone(project.id, docid, event_id)
        except FormatError as exc:
            raise EventRejected(f"ann.json of {docid}: {exc}") from None
        defs = self.label_defs(project)
        unknown = [mid for mid in ann.metas if mid not in {d.id for d in defs}]
        if unknown:  # the legend may have grown since it was cached
            defs = self.label_defs(project, refresh=True)
            unknown = [mid for mid in ann.metas if mid not in {d.id for d in defs}]
        if unknown:
            raise EventRejected(f"ann.json of {docid} has unknown label id(s) {unknown}; "
                                f"legend: {sorted(d.id for d in defs)}")
        value, who = self.ground_truth_value(ann, scheme)

        def check(s: Any, project: Project) -> None:
            if value is not None and scheme.kind == "single":
                self._check_value(s, project, defs, value)

        def new_document(project: Project) -> Document:
            text = client.get_text(project.owner, project.name, docid)
            folder = self._folder_of(client, project, docid)
            return Document(project_id=project.id, platform_id=docid, text=text, text_hash=text_hash(text),
                            folder=folder, is_test=self.in_test_folder(folder))

        changed = self.store_label(project.id, docid, new_document, value, who, event_id, check=check)
        if not changed:
            return "unchanged"
        return "label removed" if value is None else f"labelled {class_name(value)}"

    def store_label(self, project_id: int, docid: str, new_document: Callable[[Project], Document], value: Any,
                    who: str, event_id: int | None, annotation_id: str | None = None,
                    check: Callable[[Any, Project], None] | None = None) -> bool:
        """Store ``value`` as the label of the project's document ``docid``, creating the document with
        ``new_document`` when it is not stored yet. True when the label changed. Two workers storing the same new
        document at once: the loser's insert fails on the unique key, its session rolls back, and the second try
        reads the winner's row (by id: what the rolled-back session loaded is detached)."""
        from sqlalchemy.exc import IntegrityError  # noqa: PLC0415

        def once() -> bool:
            with self.store.session() as s:
                project = s.get(Project, project_id)
                if check is not None:
                    check(s, project)
                doc = s.scalar(select(Document).filter_by(project_id=project_id, platform_id=docid))
                if doc is None:
                    doc = new_document(project)
                    s.add(doc)
                    s.flush()
                return self._set_label(s, project, doc, value, who, event_id, annotation_id=annotation_id)

        try:
            return once()
        except IntegrityError:  # another worker stored this document meanwhile: now it is found
            return once()

    def in_test_folder(self, folder: str | None) -> bool:
        t = self.settings.test_folder.strip("/")
        return bool(t and folder and (folder == t or folder.startswith(t + "/")))

    def _folder_of(self, client: TagtogClient, project: Project, docid: str) -> str | None:
        """The document's folder, looked up only when a test folder is configured (one search call)."""
        if not self.settings.test_folder:
            return None
        hits = [h for h in client.search(project.owner, project.name, f"docid:{docid}") if h.docid == docid]
        return hits[0].folder if hits else None

    def _set_label(self, s: Any, project: Project, doc: Document, value: Any, who: str,
                   event_id: int | None, annotation_id: str | None = None) -> bool:
        current = latest_label(s, doc.id)
        new = None if value is None else dumps_value(value)
        if (current.value if current else None) == new:
            if current is not None and annotation_id and current.annotation_id != annotation_id:
                current.annotation_id = annotation_id  # same value, now held by another annotation
            return False
        s.add(Label(project_id=project.id, document_id=doc.id, value=new, who=who, event_id=event_id,
                    annotation_id=annotation_id))
        if new is not None:  # a person labelled a document we pre-labelled: did they keep our suggestion?
            up = s.scalar(select(Upload).where(Upload.document_id == doc.id).order_by(Upload.id.desc()).limit(1))
            if up is not None and up.accepted is None:
                up.accepted = up.value == new
        return True

    def _document_gone(self, project_id: int, docid: str, event_id: int) -> str:
        with self.store.session() as s:
            doc = s.scalar(select(Document).filter_by(project_id=project_id, platform_id=docid))
            if doc is not None:
                self._set_label(s, s.get(Project, project_id), doc, None, "", event_id)
        return "document no longer exists"

    def maybe_request_retrain(self, project_id: int) -> bool:
        """Flag the project for retraining once RETRAIN_EVERY new labels arrived. True if newly flagged."""
        with self.store.session() as s:
            p = s.get(Project, project_id)
            n_new = s.scalar(select(func.count()).select_from(Label).where(
                Label.project_id == project_id, Label.id > p.trained_through_label))
        if n_new < self.settings.retrain_every and not (n_new and self.new_class_seen(project_id)):
            return False  # a class seen for the first time forces a retrain, whatever RETRAIN_EVERY says
        return self.store.request_retrain(project_id)

    # -- 2. import platform documents (candidates and existing labels) ------------------------------------
    def sync_project(self, project_id: int, force: bool = False) -> int:
        """Import documents of the platform project that prelabel has not seen (text + ground truth)."""
        if self._platform(project_id) == LOCAL:
            return 0
        with self.store.session() as s:
            p = s.get(Project, project_id)
            if not force and p.last_sync_at and utcnow() - p.last_sync_at < timedelta(
                    seconds=self.settings.sync_interval_s):
                return 0
        if p.platform == "labelstudio":  # the export lists every task: reconciliation is the sync
            return self.ls.reconcile(project_id)["new_documents"]
        with self.store.session() as s:
            p = s.get(Project, project_id)
            known = set(s.scalars(select(Document.platform_id).where(Document.project_id == p.id,
                                                                      Document.platform_id.is_not(None))))
        from sqlalchemy.exc import IntegrityError  # noqa: PLC0415

        scheme = self.resolve_scheme(p.id)
        client = self.client(p.platform)
        n = 0
        for hit in client.search(p.owner, p.name, self.settings.tagtog_sync_query):
            if hit.docid in known:
                continue
            try:
                ann = client.get_annjson(p.owner, p.name, hit.docid, self.settings.tagtog_member)
                text = client.get_text(p.owner, p.name, hit.docid)
            except NotFound:
                continue
            except FormatError as exc:
                logger.warning("sync %s/%s: skipping %s: %s", p.owner, p.name, hit.docid, exc)
                continue
            try:
                value, who = self.ground_truth_value(ann, scheme)
            except EventRejected as exc:
                logger.warning("sync %s/%s: label of %s ignored: %s", p.owner, p.name, hit.docid, exc)
                value, who = None, ""
            try:
                with self.store.session() as s:
                    proj = s.get(Project, p.id)
                    doc = Document(project_id=p.id, platform_id=hit.docid, filename=hit.filename, text=text,
                                   text_hash=text_hash(text), folder=hit.folder,
                                   is_test=self.in_test_folder(hit.folder), platform_updated=hit.updated or None)
                    s.add(doc)
                    s.flush()
                    if value is not None:
                        try:
                            if scheme.kind == "single":
                                self._check_value(s, proj, self.label_defs(proj), value)
                            self._set_label(s, proj, doc, value, who, None)
                        except EventRejected as exc:
                            logger.warning("sync %s/%s: label of %s ignored: %s", p.owner, p.name, hit.docid, exc)
            except IntegrityError:  # an event (or another worker's sync) stored it meanwhile: theirs stands
                known.add(hit.docid)
                continue
            known.add(hit.docid)
            n += 1
        with self.store.session() as s:
            s.get(Project, p.id).last_sync_at = utcnow()
        if n:
            logger.info("sync %s/%s: imported %d new documents", p.owner, p.name, n)
        return n

    def reconcile(self, project_id: int) -> dict[str, Any]:
        """Take over what the platform holds and prelabel missed (lost webhooks, prelabel down): new documents,
        labels added or changed, and removals (unconfirmed or deleted documents). Returns counts; ``recovered``
        is the number of labels that changed in the store.

        tagtog: every confirmed document (``anncomplete:true``) whose ``updated`` stamp differs from the one last
        read is read again, and so is every labelled document that is no longer confirmed.
        """
        with self.store.session() as s:
            p = s.get(Project, project_id)
            platform, owner, name = p.platform, p.owner, p.name
        if platform == "labelstudio":
            return self.ls.reconcile(project_id)
        counts = {"new_documents": self.sync_project(project_id, force=True), "labels_added": 0,
                  "labels_changed": 0, "labels_removed": 0, "invalid": 0}
        scheme = self.resolve_scheme(project_id)
        client = self.client(platform)
        member = self.settings.tagtog_member
        confirmed = {h.docid: h for h in client.search(owner, name, "anncomplete:true")}
        with self.store.session() as s:
            docs = {d.platform_id: d.platform_updated for d in s.scalars(select(Document).where(
                Document.project_id == project_id, Document.platform_id.is_not(None)))}
            labelled = {d.platform_id for d, _, _ in current_labels(s, project_id)}
        todo = [d for d, h in confirmed.items() if d in docs and (d not in labelled or h.updated != docs[d])]
        todo += sorted(d for d in labelled if d not in confirmed and d in docs)
        counts["documents_checked"] = len(todo)
        for docid in todo:
            try:
                value, who = self.ground_truth_value(client.get_annjson(owner, name, docid, member), scheme)
            except NotFound:
                value, who = None, ""
            except (FormatError, EventRejected) as exc:
                counts["invalid"] += 1
                logger.warning("reconcile %s/%s: %s skipped: %s", owner, name, docid, exc)
                continue
            with self.store.session() as s:
                proj = s.get(Project, project_id)
                doc = s.scalar(select(Document).filter_by(project_id=project_id, platform_id=docid))
                old = latest_label(s, doc.id)
                old_value = old.value if old else None
                try:
                    if value is not None and scheme.kind == "single":
                        self._check_value(s, proj, self.label_defs(proj), value)
                except EventRejected as exc:
                    counts["invalid"] += 1
                    logger.warning("reconcile %s/%s: %s skipped: %s", owner, name, docid, exc)
                    continue
                if self._set_label(s, proj, doc, value, who, None):
                    counts["labels_added" if old_value is None else "labels_removed" if value is None
                           else "labels_changed"] += 1
                if docid in confirmed:
                    doc.platform_updated = confirmed[docid].updated or None
        counts["recovered"] = counts["labels_added"] + counts["labels_changed"] + counts["labels_removed"]
        with self.store.session() as s:
            s.get(Project, project_id).last_reconcile = {**counts, "at": utcnow().isoformat() + "Z"}
        if counts["recovered"]:
            logger.info("reconcile %s/%s: %s", owner, name, json.dumps(counts))
        return counts

    # -- 3. retrain -----------------------------------------------------------------------------------------
    def _training_rows(self, project_id: int, allowed: set[str] | None = None
                       ) -> tuple[list[tuple[str, str, Any, bool]], int]:
        """(document key, text, class, is_test) of every current ground-truth label, and the last label id.
        The class is a name, or a tuple of names for a multilabel scheme. Classes not ``allowed`` (None = all)
        are left out: a single-label row is dropped, a multilabel row loses that label."""
        with self.store.session() as s:
            rows = current_labels(s, project_id)
            max_label = s.scalar(select(func.max(Label.id)).where(Label.project_id == project_id)) or 0
            out = []
            for d, v, _ in rows:
                value = json.loads(v)
                y: Any = tuple(value) if isinstance(value, list) else class_name(value)
                if allowed is not None:
                    if isinstance(y, tuple):
                        y = tuple(c for c in y if c in allowed)
                    elif y not in allowed:
                        continue
                out.append((d.platform_id or d.text_hash, d.text, y, bool(d.is_test)))
        return out, max_label

    def allowed_classes(self, project_id: int) -> set[str] | None:
        """The enum options the platform still defines (a removed option stops being trained on); None when
        the platform does not say (boolean labels, or only a legend)."""
        with self.store.session() as s:
            p = s.get(Project, project_id)
            label_id, multi = p.label_id, p.label_type == "multilabel"
        if p.platform == LOCAL:  # no platform: every imported class counts
            return None
        try:
            if p.platform == "labelstudio":  # the config's choices now
                return set(self.ls.config(project_id, refresh=True).choices)
            if multi:  # the scheme's labels as the platform defines them now
                return set(self.resolve_scheme(project_id, refresh=True).names)
            defs = self.label_defs(p, refresh=True)
        except (PlatformError, PlatformUnavailable, EventRejected) as exc:
            logger.warning("label definitions unavailable (%s); training on every label", exc)
            return None
        d = next((d for d in defs if d.id == label_id), None)
        return set(d.options) if d is not None and d.type == "enum" and d.options else None

    def new_class_seen(self, project_id: int) -> bool:
        """True when a current label has a class the champion does not know (it extends the scheme)."""
        with self.store.session() as s:
            p = s.get(Project, project_id)
            if not p.champion_id:
                return False
            known = set((s.get(ModelVersion, p.champion_id).classes or {}).get("names", []))
        rows, _ = self._training_rows(project_id)
        return bool(set(classes_of([y for _, _, y, is_test in rows if not is_test])) - known)

    def ensemble_partners(self, family: str, exclude: Sequence[str] = ()) -> list[str]:
        """The listed families that train every round (quick by default): trained next to a deferred ``family`` so
        that the round can try their ensemble. None when ensembles are off."""
        every = self.settings.family_every
        return [f for f in self.settings.families if self.settings.model_ensemble and f != family
                and f not in exclude and every.get(f, 1) == 1]

    def plateaued(self, schedule: dict[str, Any] | None) -> bool:
        """The champion's validation score gained less than PLATEAU_DELTA over the last PLATEAU_ROUNDS rounds.
        (The validation split grows with the labels, so this is a trend, not an exact comparison.)"""
        scores, n = (schedule or {}).get("scores", []), self.settings.plateau_rounds
        return len(scores) > n and scores[-1] - scores[-1 - n] < self.settings.plateau_delta

    def families_due(self, round_no: int, n_labels: int, schedule: dict[str, Any] | None = None) -> list[str]:
        """The families trained in this retrain round: each every FAMILY_EVERY-th round (default every round), a
        ``family:plateau`` one only while ``plateaued`` and at most once per PLATEAU_ROUNDS rounds; all of them
        in the first round, and always at least the first one listed. During cold start (fewer than
        COLD_START_LABELS labels) embed, the best with few labels, trains every round and comes first (wins ties)."""
        cfg = self.settings
        fams = list(cfg.families)
        cold = n_labels < cfg.cold_start_labels and "embed" in fams
        trained = (schedule or {}).get("trained", {})

        def plateau_due(f: str) -> bool:
            return round_no == 1 or (self.plateaued(schedule)
                                     and round_no - int(trained.get(f, 0)) >= cfg.plateau_rounds)

        due = [f for f in fams if (plateau_due(f) if f in cfg.plateau_families
                                   else (round_no - 1) % cfg.family_every.get(f, 1) == 0)
               or (cold and f == "embed")]
        if cold:
            due = ["embed"] + [f for f in due if f != "embed"]
        return due or fams[:1]

    def train(self, project_id: int, families: Sequence[str] | None = None,
              defer: Sequence[str] = ()) -> TrainResult | None:
        """Train one candidate per due family (or per family of ``families``, outside the round count) on every
        current ground-truth label, score each on the validation split (and the test set), keep the best, and
        promote it only if it is not worse than the champion. Due families in ``defer`` are not trained here but
        returned in ``deferred`` (the caller queues them). None if there are too few labels."""
        from model.evaluate import evaluate, evaluate_multilabel, pick_best, positive_class  # noqa: PLC0415

        cfg = self.settings
        self.store.fail_orphan_versions(project_id)  # rows an earlier failed write left without files
        allowed = self.allowed_classes(project_id)
        data, max_label = self._training_rows(project_id, allowed)
        with self.store.session() as s:
            p = s.get(Project, project_id)
            label_type, slug, labels_at_full, champion_id = p.label_type, p.slug, p.labels_at_full_fit, p.champion_id
            round_no = (p.rounds or 0) + 1
            schedule = dict(p.schedule or {})
            champion_family = s.get(ModelVersion, champion_id).family if champion_id else None
        test = [(k, t, y) for k, t, y, is_test in data if is_test]
        pool = [(k, t, y) for k, t, y, is_test in data if not is_test]
        classes = classes_of([y for _, _, y in pool])
        if len(pool) < cfg.min_labels or len(classes) < 2:
            logger.info("project %s: %d labels in %d classes; waiting for %d labels in 2+ classes", slug, len(pool),
                        len(classes), cfg.min_labels)
            return None
        train = [r for r in pool if not is_holdout(r[0], cfg.holdout_fraction)]
        val = [r for r in pool if is_holdout(r[0], cfg.holdout_fraction)]
        if len(classes_of([y for _, _, y in train])) < 2:  # tiny data: every class must be seen in training
            train, val = pool, []
        x_tr, y_tr = [t for _, t, _ in train], [y for _, _, y in train]
        validation = ([t for _, t, _ in val], [y for _, _, y in val]) if val else None
        warm_ok = bool(champion_id and len(pool) >= cfg.warm_min_labels
                       and len(pool) < cfg.full_refit_growth * max(labels_at_full, 1))

        def score(rows: list[tuple[str, str, Any]], model: Any, dataset: str,
                  proba: np.ndarray | None = None) -> dict[str, Any]:
            texts = [t for _, t, _ in rows]
            if proba is None:
                proba = model.predict_proba(texts) if rows else None
            ids, y = [k for k, _, _ in rows], [y for _, _, y in rows]
            pred = model.decide(proba) if rows else []
            if getattr(model, "multilabel_", False):
                return evaluate_multilabel(y, pred, model.classes_, proba=proba, ids=ids, dataset=dataset)
            return evaluate(y, pred, model.classes_, positive_class(model.classes_), proba=proba, ids=ids,
                            dataset=dataset)

        due = list(families) if families is not None else self.families_due(round_no, len(pool), schedule)
        deferred = tuple(f for f in due if f in defer)
        round_families = list(due)
        due = [f for f in due if f not in defer]
        if not due:
            if families is None:
                self._end_round(project_id, round_no, round_families)
            return TrainResult(0, 0, {}, "", "deferred", champion_id, deferred)
        candidates, failed, val_proba = [], [], []
        for family in due:
            t0 = time.perf_counter()
            try:
                clf, mode = self._fit_family(family, x_tr, y_tr, validation,
                                             champion_id if warm_ok and family == champion_family else None)
            except (ValueError, InterruptedError) as exc:  # e.g. texts with nothing to learn from: the others go on
                logger.warning("project %s: %s could not train: %s", slug, family, exc)
                failed.append(f"{family} could not train ({exc})")
                continue
            proba = clf.predict_proba(validation[0]) if validation is not None else None
            if validation is not None:  # multilabel: per-label cut-offs from held-out data (no-op otherwise)
                clf.tune_thresholds(*validation, proba=proba)
            seconds = time.perf_counter() - t0
            candidates.append((family, clf, mode, seconds, score(val, clf, "validation", proba)))
            val_proba.append(proba)
        if not candidates:
            raise ValueError("; ".join(failed))
        key = cfg.primary_metric
        ensemble_note = ""
        if cfg.model_ensemble and len(candidates) > 1 and validation is not None:
            ensemble, ensemble_note = self._ensemble(candidates, val_proba, val, validation[1], score, key)
            if ensemble is not None:
                candidates.append(ensemble)
        best = pick_best([c[4].get(key) for c in candidates], cfg.selection_margin)
        now_classes = classes_of([y for _, _, y, is_test in self._training_rows(project_id, allowed)[0]
                                  if not is_test])
        result = None
        for i, (family, clf, mode, seconds, metrics) in enumerate(candidates):
            if now_classes != list(clf.classes_):
                status = "rejected"
                reason = f"the label scheme changed while training ({list(clf.classes_)} -> {now_classes}); retraining"
                self.store.request_retrain(project_id)
            elif i != best:
                b = candidates[best]
                mine, theirs = metrics.get(key) or 0.0, b[4].get(key) or 0.0
                status, reason = "rejected", (
                    f"{family} {key} {mine:.4f} < {b[0]}'s {theirs:.4f} in the same round" if mine < theirs else
                    f"{family} {key} {mine:.4f} is within SELECTION_MARGIN {cfg.selection_margin} of {b[0]}'s "
                    f"{theirs:.4f} in the same round, and {b[0]} comes first")
            else:
                status, reason = self._gate(project_id, champion_id, clf, val, metrics, score)
                if len(candidates) > 1:
                    reason = f"best of {', '.join(c[0] for c in candidates)} this round; {reason}"
                if failed:
                    reason = f"{reason}; {'; '.join(failed)}"
                if ensemble_note:
                    reason = f"{reason}; {ensemble_note}"
            r = self._save_candidate(project_id, slug, clf, mode, status, reason, metrics,
                                     score(test, clf, "test") if test else {}, train, val, test, max_label,
                                     seconds, label_type, pool)
            if i == best or result is None:
                result = r
        if families is None:
            self._end_round(project_id, round_no, round_families)
        return replace(result, deferred=deferred)

    def _end_round(self, project_id: int, round_no: int, families: Sequence[str]) -> None:
        """Count the round; note the champion's validation score and which families it trained (plateau rule)."""
        key = self.settings.primary_metric
        with self.store.session() as s:
            p = s.get(Project, project_id)
            p.rounds = round_no
            schedule = dict(p.schedule or {})
            champion = s.get(ModelVersion, p.champion_id) if p.champion_id else None
            if champion is not None and (champion.metrics or {}).get(key) is not None:
                schedule["scores"] = (list(schedule.get("scores", [])) + [float(champion.metrics[key])])[-20:]
            schedule["trained"] = {**schedule.get("trained", {}), **{f: round_no for f in families}}
            p.schedule = schedule

    def _ensemble(self, candidates: list[tuple[Any, ...]], val_proba: list[np.ndarray], val: list[Any],
                  y_val: list[Any], score: Callable[..., dict[str, Any]], key: str) -> tuple[tuple[Any, ...] | None, str]:
        """The round's best ensemble (mean probabilities of 2+ candidates, the subset chosen on validation) as
        one more candidate, only when it beats every single one; else None and a note of its score."""
        from model.ensemble import best_ensemble  # noqa: PLC0415

        classes = [list(c[1].classes_) for c in candidates]
        if any(c != classes[0] for c in classes):
            return None, ""
        ens, subset, proba = best_ensemble([c[1] for c in candidates], val_proba, [t for _, t, _ in val], y_val,
                                           lambda m, p: score(val, m, "validation", p).get(key) or 0.0)
        metrics = score(val, ens, "validation", proba)
        names = "+".join(candidates[i][0] for i in subset)
        single = max((c[4].get(key) or 0.0) for c in candidates)
        if (metrics.get(key) or 0.0) <= single + self.settings.selection_margin:
            return None, (f"ensemble {names} {key} {metrics.get(key) or 0.0:.4f} is not above the best single "
                          f"model's {single:.4f} + SELECTION_MARGIN")
        return ("ensemble", ens, "full", sum(candidates[i][3] for i in subset), metrics), ""

    def _allocate_version(self, project_id: int, clf: Any, mode: str, reason: str, seconds: float) -> tuple[int, int]:
        """The next version number, taken by inserting its row: two workers saving at once (the bert queue and
        the main one) get different numbers."""
        from sqlalchemy.exc import IntegrityError  # noqa: PLC0415

        for _ in range(10):
            try:
                with self.store.session() as s:
                    version = (s.scalar(select(func.max(ModelVersion.version))
                                        .where(ModelVersion.project_id == project_id)) or 0) + 1
                    # "saving" until its files and record are written: never mistaken for a gated candidate
                    mv = ModelVersion(project_id=project_id, version=version, family=clf.family, mode=mode, path="",
                                      train_seconds=seconds, status="saving", reason=reason)
                    s.add(mv)
                    s.flush()
                    return version, mv.id
            except IntegrityError:
                continue
        raise RuntimeError(f"could not allocate a model version for project {project_id}")

    def _fit_family(self, family: str, x_tr: list[str], y_tr: list[Any], validation: Any,
                    warm_from: int | None) -> tuple[Any, str]:
        """A fitted candidate of ``family``: warm (the champion's copy trained further) or full."""
        from model.factory import make_classifier  # noqa: PLC0415

        cfg = self.settings
        if warm_from is not None:
            clf = self._load_copy(warm_from)  # never train the champion in place: the candidate may lose
            if list(clf.classes_) == classes_of(y_tr):
                clf.refit(x_tr, y_tr, epochs=cfg.warm_epochs, lr_factor=cfg.warm_lr_factor, validation=validation)
                return clf, "warm"
        clf = make_classifier(family, epochs=cfg.model_epochs, cell=cfg.model_cell, random_state=cfg.model_seed,
                              checkpoint=cfg.bert_checkpoint)
        clf.fit(x_tr, y_tr, validation=validation)
        return clf, "full"

    def _save_candidate(self, project_id: int, slug: str, clf: Any, mode: str, status: str,
                        reason: str, metrics: dict[str, Any], test_metrics: dict[str, Any], train: list[Any],
                        val: list[Any], test: list[Any], max_label: int, seconds: float, label_type: str | None,
                        pool: list[Any]) -> TrainResult:
        multilabel = bool(getattr(clf, "multilabel_", False))
        history = getattr(clf, "history_", {})
        meta = {"family": clf.family, "version": 0, "mode": mode, "status": status, "reason": reason,
                "classes": list(clf.classes_), "multilabel": multilabel,
                "label_values": list(clf.classes_) if multilabel else [class_value(c, label_type) for c in clf.classes_],
                "label_type": label_type, "params": clf.get_params(), "metrics": metrics, "test_metrics": test_metrics,
                "estimator": getattr(clf, "estimator_", None),  # e.g. why quick fell back to logistic regression
                "history": history, "n_train": len(train), "n_validation": len(val), "n_test": len(test),
                "trained_through_label": max_label, "train_seconds": seconds, "trained_at": utcnow().isoformat() + "Z"}
        version, version_id = self._allocate_version(project_id, clf, mode, reason, seconds)
        meta["version"] = version
        try:
            folder = save_version(clf, self.settings.models_path / slug, f"v{version}", meta)
        except OSError as exc:  # disk full, read-only volume...: nothing half-written stays (save_version)
            reason = f"its files could not be written: {exc.strerror or exc}"
            self._fail_quietly(version_id, reason)
            raise ModelWriteError(f"project {slug}: v{version} {reason}; the champion is unchanged") from exc
        try:
            self._record_saved(project_id, version_id, folder, clf, mode, status, metrics, test_metrics, history,
                               multilabel, label_type, train, val, max_label, pool)
        except Exception as exc:  # e.g. the database is locked: the files must not outlive their row
            shutil.rmtree(folder, ignore_errors=True)
            self._fail_quietly(version_id, f"its record could not be written: {exc}")
            cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error ("database is locked")
            raise ModelWriteError(f"project {slug}: v{version} could not be recorded ({type(cause).__name__}: "
                                  f"{str(cause).splitlines()[0][:200]}); the champion is unchanged") from exc
        with self.store.session() as s:
            champion_id = s.get(Project, project_id).champion_id
        if status == "champion":
            self.store.promote(project_id, version, reason)
            self._models[project_id] = (version_id, clf)
            champion_id = version_id
        logger.info("project %s: v%d %s (%s, %s) on %d labels in %.1fs; validation %d: %s %.3f; %s", slug, version,
                    clf.family, mode, status, len(train), seconds, len(val), self.settings.primary_metric,
                    metrics.get(self.settings.primary_metric) or 0.0, reason)
        return TrainResult(version_id, version, metrics, mode, status, champion_id)

    def _fail_quietly(self, version_id: int, reason: str) -> None:
        try:
            self.store.fail_version(version_id, reason)
        except Exception:  # the database itself may be what failed; the next run's recovery marks the row
            logger.warning("could not mark version row %d failed (%s)", version_id, reason)

    def _record_saved(self, project_id: int, version_id: int, folder: Path, clf: Any, mode: str, status: str,
                      metrics: dict[str, Any], test_metrics: dict[str, Any], history: Any, multilabel: bool,
                      label_type: str | None, train: list[Any], val: list[Any], max_label: int,
                      pool: list[Any]) -> None:
        with self.store.session() as s:
            mv = s.get(ModelVersion, version_id)
            mv.path, mv.params, mv.metrics, mv.test_metrics, mv.history = (str(folder), clf.get_params(), metrics,
                                                                           test_metrics, history)
            mv.classes = {"names": list(clf.classes_), "label_type": label_type, "multilabel": multilabel,
                          "thresholds": [float(t) for t in clf.thresholds()]}
            mv.n_train, mv.n_holdout = len(train), len(val)
            p = s.get(Project, project_id)
            p.trained_through_label = max(p.trained_through_label, max_label)
            if mode == "full":
                p.labels_at_full_fit = len(pool)
            mv.status = "rejected" if status == "rejected" else "candidate"  # champion: promote() follows

    def cross_validate(self, project_id: int, folds: int = 10, max_labels: int = 3000) -> dict[str, Any]:
        """k-fold cross-validation of the champion's configuration on every train + validation label (never the
        test set); stored on the champion version. Refused above ``max_labels``: each fold is a full fit."""
        from sklearn.model_selection import KFold, StratifiedKFold  # noqa: PLC0415

        from model.evaluate import evaluate, evaluate_multilabel  # noqa: PLC0415
        from model.factory import make_classifier  # noqa: PLC0415

        cfg = self.settings
        rows = [r for r in self._training_rows(project_id, self.allowed_classes(project_id))[0] if not r[3]]
        if len(rows) > max_labels:
            raise ValueError(f"{len(rows)} labels: cross-validation is for small data (at most {max_labels})")
        ys = [y for _, _, y, _ in rows]
        multilabel = bool(ys) and isinstance(ys[0], tuple)
        classes = classes_of(ys)
        counts = {c: sum(c == y for y in ys) for c in classes} if not multilabel else {}
        if len(rows) < folds * 2 or len(classes) < 2 or (counts and min(counts.values()) < folds):
            raise ValueError(f"too few labels for {folds}-fold cross-validation ({len(rows)} labels, "
                             f"per class {counts or 'n/a'})")
        with self.store.session() as s:
            p = s.get(Project, project_id)
            champion = s.get(ModelVersion, p.champion_id) if p.champion_id else None
            family = champion.family if champion else cfg.families[0]
            members = (champion.params or {}).get("families") if family == "ensemble" else None
        splitter = KFold(folds, shuffle=True, random_state=cfg.model_seed) if multilabel else \
            StratifiedKFold(folds, shuffle=True, random_state=cfg.model_seed)
        scores = []
        t0 = time.perf_counter()
        for tr, te in splitter.split(np.zeros(len(rows)), None if multilabel else ys):
            clf = make_classifier(family, epochs=cfg.model_epochs, cell=cfg.model_cell, random_state=cfg.model_seed,
                                  checkpoint=cfg.bert_checkpoint, **({"families": members} if members else {}))
            clf.fit([rows[i][1] for i in tr], [ys[i] for i in tr])
            x_te, y_te = [rows[i][1] for i in te], [ys[i] for i in te]
            m = (evaluate_multilabel(y_te, clf.predict(x_te), classes) if multilabel
                 else evaluate(y_te, clf.predict(x_te), classes))
            scores.append({k: m[k] for k in ("accuracy", "f1_macro", "f1_micro", "f1_weighted", "mcc")})
        result = {"folds": folds, "family": family, "n_labels": len(rows), "dataset": "train+validation (k-fold)",
                  "seconds": round(time.perf_counter() - t0, 1),
                  **{f"{k}_mean": float(np.mean([s[k] for s in scores])) for k in scores[0]},
                  **{f"{k}_std": float(np.std([s[k] for s in scores])) for k in scores[0]}, "per_fold": scores}
        with self.store.session() as s:
            p = s.get(Project, project_id)
            if p.champion_id:
                s.get(ModelVersion, p.champion_id).cv = result
        return result

    def _gate(self, project_id: int, champion_id: int | None, clf: Any, val: list[tuple[str, str, str]],
              metrics: dict[str, Any], score: Callable[..., dict[str, Any]]) -> tuple[str, str]:
        """Promotion rule: compare the candidate and the champion on the **same** validation documents."""
        key, margin = self.settings.primary_metric, self.settings.promotion_margin
        if champion_id is None:
            return "champion", "first model"
        if not val:
            return "champion", "no validation documents yet: promoted without comparison"
        champion = self._classifier(project_id, champion_id)
        if list(champion.classes_) != list(clf.classes_):
            return "champion", f"label scheme changed ({list(champion.classes_)} -> {list(clf.classes_)})"
        with self.store.session() as s:
            champ_version = s.get(ModelVersion, champion_id).version
        champ = score(val, champion, "validation")[key]
        cand = metrics[key]
        where = f"on the same {len(val)} validation documents"
        if cand >= champ - margin:
            return "champion", f"{key} {cand:.4f} >= champion v{champ_version}'s {champ:.4f} - {margin} {where}"
        return "rejected", f"{key} {cand:.4f} < champion v{champ_version}'s {champ:.4f} - {margin} {where}"

    def _load_copy(self, version_id: int) -> Any:
        from model.factory import load_classifier  # noqa: PLC0415

        with self.store.session() as s:
            path = s.get(ModelVersion, version_id).path
        return load_classifier(Path(path))

    def _classifier(self, project_id: int, version_id: int) -> Any:
        """The model of a version, kept in memory for the champion."""
        cached = self._models.get(project_id)
        if cached is not None and cached[0] == version_id:
            return cached[1]
        clf = self._load_copy(version_id)
        self._models[project_id] = (version_id, clf)
        return clf

    # -- 4. pre-label ---------------------------------------------------------------------------------------
    def corpus_texts(self) -> list[str]:
        path = self.settings.corpus_path
        if not path:
            return []
        mtime = os.path.getmtime(path)
        if self._corpus is None or self._corpus[0] != mtime:
            self._corpus = (mtime, parse_corpus(Path(path).read_bytes(), Path(path).name,
                                                self.settings.corpus_text_column))
        return self._corpus[1]

    def embed_pool(self, project_id: int, batch: int = 512) -> int:
        """Embed up to ``batch`` of the project's documents (pool and labelled) that this worker process has not
        embedded yet, when a listed family uses the embeddings (embed, hybrid); returns how many are left. Run in
        the background in small batches (jobs.embed_pool), so the retrain that first needs them finds them cached
        and a confirm arriving meanwhile waits seconds, not minutes."""
        if not {"embed", "hybrid"} & set(self.settings.families):
            return 0
        from model.embed import encoder_for  # noqa: PLC0415

        encoder = encoder_for(self.settings.bert_checkpoint)  # the families' default max_length
        with self.store.session() as s:
            texts = list(s.scalars(select(Document.text).where(Document.project_id == project_id)))
        todo = encoder.pending(texts)
        if todo:
            t0 = time.perf_counter()
            encoder.encode(todo[:batch])
            logger.info("embedded %d documents in %.1fs; %d left", min(batch, len(todo)), time.perf_counter() - t0,
                        max(0, len(todo) - batch))
        return max(0, len(todo) - batch)

    def score_pool(self, project_id: int, version_id: int) -> int:
        """Store the champion's probabilities for every unlabelled platform document (for ``GET .../next``)."""
        from storage import Prediction  # noqa: PLC0415

        clf = self._classifier(project_id, version_id)
        with self.store.session() as s:
            labelled = {d.id for d, _, _ in current_labels(s, project_id)}
            docs = [(d.id, d.text) for d in s.scalars(select(Document).where(
                Document.project_id == project_id, Document.platform_id.is_not(None))) if d.id not in labelled]
        t0 = time.perf_counter()
        proba = clf.predict_proba([t for _, t in docs]) if docs else np.zeros((0, len(clf.classes_)))
        classes = list(clf.classes_)
        with self.store.session() as s:
            s.query(Prediction).filter_by(project_id=project_id).delete()
            s.add_all([Prediction(document_id=d, project_id=project_id, model_version_id=version_id,
                                  proba={"classes": classes, "p": [round(float(x), 6) for x in row],
                                         "multilabel": bool(getattr(clf, "multilabel_", False))})
                       for (d, _), row in zip(docs, proba)])
        logger.info("scored %d pool documents in %.2fs", len(docs), time.perf_counter() - t0)
        return len(docs)

    def choose(self, clf: Any, texts: list[str], n: int, counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray, str]:
        """Pick ``n`` of ``texts`` with the configured strategy; random (within the regex) during cold start,
        i.e. while some class has fewer than COLD_START_MIN training labels (``counts``)."""
        from model.query import query  # noqa: PLC0415

        cfg = self.settings
        proba = clf.predict_proba(texts)
        strategy = cfg.al_strategy
        multilabel = bool(getattr(clf, "multilabel_", False))
        if min(counts.get(c, 0) for c in clf.classes_) < cfg.cold_start_min:
            strategy = "random"
        label_index = list(clf.classes_).index(cfg.al_label) if cfg.al_label in clf.classes_ else None
        if strategy == "maxprob" and label_index is None:
            strategy = "least_confidence"
            logger.warning("AL_LABEL %r is not a class %s; using least_confidence", cfg.al_label, list(clf.classes_))
        idx, scores = query(proba, n, strategy, texts=texts, regex=cfg.al_regex or None, label_index=label_index,
                            multilabel=multilabel, seed=cfg.model_seed + len(texts))
        tag = "cold_start:random" if strategy == "random" and cfg.al_strategy != "random" else strategy
        return idx, np.asarray([proba[i] for i in idx]).reshape(len(idx), -1), tag + (
            f"[{cfg.al_regex}]" if cfg.al_regex else "")

    def prelabel(self, project_id: int, version_id: int) -> int:
        """Upload K documents chosen by the strategy, with the champion's label and probability."""
        cfg = self.settings
        clf = self._classifier(project_id, version_id)
        with self.store.session() as s:
            p = s.get(Project, project_id)
            mv = s.get(ModelVersion, version_id)
            owner, name, platform, label_id, label_type = p.owner, p.name, p.platform, p.label_id, p.label_type
            version = mv.version
            current = current_labels(s, project_id)
            labelled = {d.id for d, _, _ in current}
            counts = class_counts(json.loads(v) for d, v, _ in current if not d.is_test)
            docs = [(d.id, d.text) for d in s.scalars(select(Document).where(
                Document.project_id == project_id, Document.platform_id.is_not(None),
                Document.is_test.is_not(True))) if d.id not in labelled]
            known_hashes = set(s.scalars(select(Document.text_hash).where(Document.project_id == project_id,
                                                                          Document.platform_id.is_not(None))))
            imported = [d.text for d in s.scalars(select(Document).where(  # scripts.cli import, not uploaded yet
                Document.project_id == project_id, Document.platform_id.is_(None), Document.source == "corpus"))
                if d.id not in labelled]
            done = set(s.scalars(select(Upload.document_id).where(Upload.model_version_id == version_id)))
        corpus = [] if platform == "labelstudio" else [  # Label Studio: import into the project instead
            t for t in dict.fromkeys(imported + self.corpus_texts()) if text_hash(t) not in known_hashes]
        texts = [t for _, t in docs] + corpus
        if not texts:
            logger.info("%s/%s: nothing left to pre-label", owner, name)
            return 0
        chosen, chosen_proba, strategy = self.choose(clf, texts, cfg.prelabel_k, counts)
        who = f"ml:prelabel-v{version}"
        scheme = self.resolve_scheme(project_id)
        if platform == "labelstudio":
            return self._predictions_labelstudio(project_id, version_id, version, clf, docs, chosen, chosen_proba,
                                                 strategy, done)
        name_to_id = dict(zip(scheme.names, scheme.ids))
        client = self.client(platform)
        n = 0
        th = clf.thresholds()
        for i, row in zip(chosen, chosen_proba):
            if scheme.kind == "multilabel":  # every label of the scheme: true/false with its own probability
                marks = [(name_to_id[c], bool(p >= t), float(p if p >= t else 1.0 - p))
                         for c, p, t in zip(clf.classes_, row, th) if c in name_to_id]
                value = sorted(c for c, p, t in zip(clf.classes_, row, th) if p >= t)
                prob = float(np.mean([m[2] for m in marks])) if marks else 0.5
            else:
                k = int(np.argmax(row))
                value, prob = class_value(clf.classes_[k], label_type), float(row[k])
                marks = [(label_id, value, prob)]
            marks = [(lid, v, min(max(pr, 1e-6), 1.0)) for lid, v, pr in marks]  # tagtog's prob is in (0, 1]
            if i < len(docs):
                doc_id = docs[i][0]
                if doc_id in done:
                    continue
                with self.store.session() as s:
                    docid = s.get(Document, doc_id).platform_id
            else:
                doc_id, docid = self._create_corpus_document(project_id, texts[i])
            # tagtog has no conditional update: check each document right before its own upload, and skip one
            # whose save is waiting in our queue (a person just touched it), to keep the race window tiny.
            if self._save_pending(project_id, docid):
                continue
            try:
                current = client.get_annjson(owner, name, docid, cfg.tagtog_member)
                if has_human_label(current):  # a person got there first: never overwrite
                    continue
                html = client.get_plain_html(owner, name, docid)
                ann = current
                for lid, v, pr in marks:
                    ann = with_prelabel(ann, lid, v, pr, who)
                client.upload_anndoc(owner, name, [AnndocUpload(docid, html, ann)], member=cfg.tagtog_member)
            except NotFound:
                continue
            with self.store.session() as s:  # remembered at once: a retried job skips what is done
                s.add(Upload(project_id=project_id, document_id=doc_id, model_version_id=version_id,
                             value=dumps_value(value), prob=prob, strategy=strategy))
            n += 1
        logger.info("%s/%s: uploaded %d pre-labels from v%d (%s)", owner, name, n, version, strategy)
        return n

    def _predictions_labelstudio(self, project_id: int, version_id: int, version: int, clf: Any,
                                 docs: list[tuple[int, str]], chosen: Any, chosen_proba: Any, strategy: str,
                                 done: set[int]) -> int:
        """Label Studio: predictions never overwrite annotations, so the chosen tasks get theirs in one call."""
        multilabel = bool(getattr(clf, "multilabel_", False))
        items: list[tuple[int, str, Any, float]] = []
        with self.store.session() as s:
            for i, row in zip(chosen, chosen_proba):
                doc_id = docs[i][0]
                task = s.get(Document, doc_id).platform_id
                if doc_id in done or self._save_pending(project_id, task):
                    continue
                if multilabel:
                    th = clf.thresholds()
                    value: Any = sorted(c for c, p, t in zip(clf.classes_, row, th) if p >= t)
                    prob = float(np.mean([p if p >= t else 1.0 - p for p, t in zip(row, th)]))
                else:
                    k = int(np.argmax(row))
                    value, prob = str(clf.classes_[k]), float(row[k])
                items.append((doc_id, task, value, prob))
        if not items:
            return 0
        n = self.ls.upload_predictions(project_id, items, version)
        with self.store.session() as s:
            s.add_all([Upload(project_id=project_id, document_id=d, model_version_id=version_id,
                              value=dumps_value(v), prob=p, strategy=strategy) for d, _, v, p in items])
        logger.info("Label Studio project %s: %d predictions from v%d (%s)", project_id, n, version, strategy)
        return n

    def _save_pending(self, project_id: int, docid: str) -> bool:
        with self.store.session() as s:
            return s.scalar(select(Event.id).where(Event.project_id == project_id, Event.doc_id == docid,
                                                   Event.state.in_(("queued", "processing"))).limit(1)) is not None

    def _create_corpus_document(self, project_id: int, text: str) -> tuple[int, str]:
        """Upload a corpus sample as a new platform document, exactly once even if the job is retried: the
        row is written first under a deterministic filename, which finds the document after a crash."""
        h = text_hash(text)
        filename = f"prelabel-{h[:16]}.txt"
        with self.store.session() as s:
            p = s.get(Project, project_id)
            doc = s.scalar(select(Document).filter_by(project_id=project_id, text_hash=h, source="corpus"))
            if doc is None:
                doc = Document(project_id=project_id, platform_id=None, filename=filename, text=text, text_hash=h,
                               source="corpus")
                s.add(doc)
                s.flush()
            doc_id, owner, name, platform = doc.id, p.owner, p.name, p.platform
            if doc.platform_id:
                return doc_id, doc.platform_id
        client = self.client(platform)
        found = [hit.docid for hit in client.search(owner, name, f"filename:{filename}")]
        docid = found[0] if found else client.create_text(owner, name, text, filename, self.settings.prelabel_folder)[0]
        with self.store.session() as s:
            s.get(Document, doc_id).platform_id = docid
        return doc_id, docid


def save_version(clf: Any, root: Path, name: str, meta: dict[str, Any]) -> Path:
    """Write a model version folder atomically: a temporary folder renamed into place, so a crash never leaves
    half a model. Holds model.h5, vocab.json (RNN) and meta.json."""
    from model.base import write_json  # noqa: PLC0415

    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        clf.save(tmp)
        if getattr(clf, "thresholds_", None) is not None:  # tuned multilabel cut-offs: load_classifier restores them
            meta = {**meta, "thresholds": [float(t) for t in clf.thresholds_]}
        write_json(tmp / "meta.json", meta)
        if final.exists():  # a retried job that crashed after the rename: replace the orphan
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final

