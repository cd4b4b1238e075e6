"""The Label Studio side of the loop: label scheme from the label config, ingesting tasks, reconciliation and
uploading predictions. ``pipeline.Loop`` calls it for projects whose platform is ``labelstudio``; everything
platform-neutral (storage of labels, training, gating, choosing documents) stays in ``pipeline``.

Webhook bodies are never trusted for labels: an event only names a task, and the worker reads the task back from
Label Studio with prelabel's own token. A replayed, forged or out-of-order webhook therefore converges to what
Label Studio holds.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from annotation_client import NotFound
from formats.labelstudio import (FormatError, LabelConfig, build_prediction, model_version_name, parse_label_config,
                                 task_label)
from storage import Document, Label, Project, current_labels, dumps_value, text_hash, utcnow

if TYPE_CHECKING:
    from pipeline import Loop, Scheme

logger = logging.getLogger(__name__)
RETRAIN_REQUESTED = "retrain requested"


class LabelStudioSide:
    """Label Studio operations of one worker's Loop. Configs are cached per project and re-read on a
    PROJECT_UPDATED event, at each reconcile, and when an annotation names a choice the cache does not know."""

    def __init__(self, loop: "Loop") -> None:
        self.loop = loop
        self._configs: dict[int, LabelConfig] = {}
        self.changed: tuple[list[str], list[str]] | None = None  # the last label config change noticed

    @property
    def store(self) -> Any:
        return self.loop.store

    def _project(self, project_id: int) -> tuple[int, str]:
        with self.store.session() as s:
            p = s.get(Project, project_id)
            return int(p.name), p.label_name

    def client(self) -> Any:
        return self.loop.client("labelstudio")

    def config(self, project_id: int, refresh: bool = False) -> LabelConfig:
        from pipeline import EventRejected  # noqa: PLC0415

        if refresh or project_id not in self._configs:
            ls_id, control = self._project(project_id)
            project = self.client().get_project(ls_id)
            try:
                self._configs[project_id] = parse_label_config(project.get("label_config") or "", control)
            except FormatError as exc:
                raise EventRejected(f"Label Studio project {ls_id}: {exc}") from None
        return self._configs[project_id]

    def scheme(self, project_id: int, refresh: bool = False) -> "Scheme":
        """``single`` (one class per task, binary or multiclass) or ``multilabel`` (choice="multiple").
        The choices are kept on the project: when they change, a retrain is requested (here, whichever path
        noticed the change first)."""
        from pipeline import Scheme  # noqa: PLC0415

        cfg = self.config(project_id, refresh)
        kind = "multilabel" if cfg.multiple else "enum"
        with self.store.session() as s:
            p = s.get(Project, project_id)
            before = (p.label_type, [c for c, _ in p.label_ids or []])
            p.label_id, p.label_type, p.label_ids = cfg.from_name, kind, [[c, c] for c in cfg.choices]
        if before[0] is not None and before != (kind, list(cfg.choices)):
            logger.info("Label Studio project %s: label config changed %s -> %s; retrain requested", p.name,
                        before, (kind, list(cfg.choices)))
            self.store.request_retrain(project_id)
            self.changed = (before[1], list(cfg.choices))
        if cfg.multiple:
            return Scheme("multilabel", cfg.choices, cfg.choices, "boolean")
        return Scheme("single", (cfg.from_name,), (cfg.from_name,), "enum")

    # -- events ------------------------------------------------------------------------------------------------
    def process_event(self, event_id: int, project_id: int, kind: str, ref: str) -> str:
        from pipeline import EventRejected  # noqa: PLC0415

        if kind in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
            return self.ingest_task(project_id, int(ref), event_id)
        if kind == "ANNOTATIONS_DELETED":
            ids = [i for i in ref.removeprefix("annotations:").split(",") if i]
            with self.store.session() as s:
                docs = sorted(set(s.scalars(select(Label.document_id).where(
                    Label.project_id == project_id, Label.annotation_id.in_(ids)))))
                tasks = [s.get(Document, d).platform_id for d in docs]
            outcomes = [self.ingest_task(project_id, int(t), event_id) for t in tasks if t]
            return f"{len(outcomes)} task(s) re-read: {', '.join(outcomes) or 'none known'}"[:200]
        if kind == "reconcile":
            r = self.reconcile(project_id)
            return (f"reconciled {r['tasks']} tasks: {r['recovered']} label(s) recovered, "
                    f"{r['new_documents']} new document(s)")
        if kind == "PROJECT_UPDATED":
            self.changed = None
            self.scheme(project_id, refresh=True)
            if self.changed is not None:
                return f"label config changed ({self.changed[0]} -> {self.changed[1]}); {RETRAIN_REQUESTED}"
            return "label config unchanged"
        if kind == "START_TRAINING":
            self.store.request_retrain(project_id)
            return RETRAIN_REQUESTED
        raise EventRejected(f"unknown Label Studio event kind {kind!r}")

    def ingest_task(self, project_id: int, task_id: int, event_id: int | None) -> str:
        """Read one task back from Label Studio and store its ground truth (or its removal)."""
        from pipeline import EventRejected  # noqa: PLC0415

        self.loop.resolve_scheme(project_id)
        try:
            task = self.client().get_task(task_id)
        except NotFound:
            return self.loop._document_gone(project_id, str(task_id), event_id or 0)
        cfg = self.config(project_id)
        try:
            tl = task_label(task, cfg)
            if tl.invalid:  # the config may have gained that choice since it was cached
                cfg = self.config(project_id, refresh=True)
                self.scheme(project_id)
                tl = task_label(task, cfg)
        except FormatError as exc:
            raise EventRejected(str(exc)) from None
        if tl.invalid:
            raise EventRejected(tl.invalid)
        changed = self.loop.store_label(
            project_id, str(task_id),
            lambda _p: Document(project_id=project_id, platform_id=str(task_id), text=tl.text,
                                text_hash=text_hash(tl.text)),
            tl.value, tl.who, event_id, annotation_id=str(tl.annotation_id) if tl.annotation_id else None)
        if not changed:
            return "unchanged"
        return "label removed" if tl.value is None else f"labelled {dumps_value(tl.value)}"

    # -- reconciliation ----------------------------------------------------------------------------------------
    def reconcile(self, project_id: int) -> dict[str, Any]:
        """Compare every task of the project (export API) with the store and take over what differs: new tasks
        (as documents to pre-label), labels added or changed while webhooks were lost, and removals (deleted
        annotations or tasks). Annotations naming a choice the config lacks are counted and left out."""
        self.loop.resolve_scheme(project_id, refresh=True)
        cfg = self.config(project_id)
        ls_id, _ = self._project(project_id)
        tasks = self.client().export_tasks(ls_id)
        counts = {"tasks": len(tasks), "new_documents": 0, "labels_added": 0, "labels_changed": 0,
                  "labels_removed": 0, "invalid": 0}
        seen: set[str] = set()
        with self.store.session() as s:
            project = s.get(Project, project_id)
            docs = {d.platform_id: d for d in s.scalars(select(Document).where(
                Document.project_id == project_id, Document.platform_id.is_not(None)))}
            current = {d.id: v for d, v, _ in current_labels(s, project_id)}
            for task in tasks:
                try:
                    tl = task_label(task, cfg)
                except FormatError as exc:
                    counts["invalid"] += 1
                    logger.warning("reconcile Label Studio project %d: task skipped: %s", ls_id, exc)
                    continue
                key = str(tl.task_id)
                seen.add(key)
                if tl.invalid:
                    counts["invalid"] += 1
                    logger.warning("reconcile Label Studio project %d: %s", ls_id, tl.invalid)
                    continue
                doc = docs.get(key)
                if doc is None:
                    doc = Document(project_id=project_id, platform_id=key, text=tl.text, text_hash=text_hash(tl.text))
                    s.add(doc)
                    s.flush()
                    docs[key] = doc
                    counts["new_documents"] += 1
                old, new = current.get(doc.id), (None if tl.value is None else dumps_value(tl.value))
                if old != new:
                    self.loop._set_label(s, project, doc, tl.value, tl.who, None,
                                         annotation_id=str(tl.annotation_id) if tl.annotation_id else None)
                    counts["labels_added" if old is None else "labels_removed" if new is None
                           else "labels_changed"] += 1
            for key, doc in docs.items():  # tasks deleted in Label Studio
                if key not in seen and doc.source == "platform" and current.get(doc.id) is not None:
                    self.loop._set_label(s, project, doc, None, "", None)
                    counts["labels_removed"] += 1
            counts["recovered"] = counts["labels_added"] + counts["labels_changed"] + counts["labels_removed"]
            project.last_reconcile = {**counts, "at": utcnow().isoformat() + "Z"}
            project.last_sync_at = utcnow()
        if counts["recovered"] or counts["new_documents"]:
            logger.info("reconcile Label Studio project %d: %s", ls_id, json.dumps(counts))
        return counts

    # -- predictions -------------------------------------------------------------------------------------------
    def upload_predictions(self, project_id: int, items: list[tuple[int, str, Any, float]], version: int) -> int:
        """Add the champion's prediction to each chosen task (doc id, task id, value, probability) and select the
        version in the project, so annotators see it. Label Studio keeps earlier predictions beside it."""
        cfg = self.config(project_id)
        ls_id, _ = self._project(project_id)
        mv = model_version_name(version)
        preds = [build_prediction(cfg, value, prob, mv, int(task)) for _, task, value, prob in items]
        n = self.client().create_predictions(ls_id, preds)
        self.client().set_model_version(ls_id, mv)
        return n
