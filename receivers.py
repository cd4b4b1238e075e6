"""Turning a Label Studio webhook delivery into a stored, queued event (no Flask, no model code).

Label Studio sends each webhook once, synchronously, with a 1 s timeout and no retries (labelstudio.md §3): the
receiver records the event in one short transaction and answers; the worker does the rest. Used by
``POST /webhooks/labelstudio`` (app.py) and by the ML backend's ``POST /webhook`` (ml_backend.py).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any, Callable, Mapping

from config import LABELSTUDIO_OWNER, Settings
from formats.labelstudio import FormatError, parse_webhook
from storage import Store

logger = logging.getLogger(__name__)


class ReceiveError(Exception):
    """A delivery refused with an HTTP status and a message for the sender."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def secret_ok(headers: Mapping[str, str], settings: Settings) -> bool:
    """True when no secret is configured, or the configured header carries it (constant-time compare)."""
    if not settings.labelstudio_webhook_secret:
        return True
    got = headers.get(settings.labelstudio_webhook_header) or ""
    return hmac.compare_digest(got.encode("utf-8", "replace"), settings.labelstudio_webhook_secret.encode("utf-8"))


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def receive_labelstudio(body: bytes, store: Store, enqueue: Callable[[int], None]) -> tuple[dict[str, Any], int]:
    """Record one Label Studio webhook body; returns the JSON answer and its status.

    Skipped annotations (``was_cancelled`` or an empty result) are not labels and are ignored when created.
    Deliveries are de-duplicated by annotation id and ``updated_at``; bulk imports (TASKS_CREATED) become one
    reconcile of the project, coalesced while one is waiting.
    """
    try:
        hook = parse_webhook(body)
    except FormatError as exc:
        raise ReceiveError(400, str(exc)) from None
    if hook.project_id is None:
        return {"status": "ignored", "reason": f"action {hook.action} is not used by prelabel"}, 200
    project_id = store.find_project_id("labelstudio", LABELSTUDIO_OWNER, str(hook.project_id))
    if project_id is None:
        raise ReceiveError(404, f"Label Studio project {hook.project_id} is not served by this prelabel "
                                "(add its id to LABELSTUDIO_PROJECTS)")
    pid = hook.project_id
    once = False
    if hook.action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        if hook.skipped and hook.action == "ANNOTATION_CREATED":
            return {"status": "ignored", "reason": "skipped task (was_cancelled or empty result): not a label"}, 200
        kind, ref, once = hook.action, str(hook.task_id), True
        key = _key("labelstudio", pid, "annotation", hook.annotation_id, hook.updated_at)
    elif hook.action == "ANNOTATIONS_DELETED":
        ref = "annotations:" + ",".join(str(i) for i in sorted(hook.annotation_ids))
        kind, once = hook.action, True
        key = _key("labelstudio", pid, "deleted", sorted(hook.annotation_ids))
        if len(ref) > 600:  # too many ids to keep on the event: compare everything instead
            kind, ref, once = "reconcile", "*", False
            key = _key("labelstudio", pid, "reconcile")
    elif hook.action == "TASKS_CREATED":  # imported tasks may carry annotations, which send no other event
        kind, ref, key = "reconcile", "*", _key("labelstudio", pid, "reconcile")
    elif hook.action == "PROJECT_UPDATED":
        kind, ref = hook.action, "*"
        key = _key("labelstudio", pid, "project", hashlib.sha256(hook.label_config.encode()).hexdigest())
    else:  # START_TRAINING
        kind, ref, key = hook.action, "*", _key("labelstudio", pid, "train")
    event_id, new = store.record_event(project_id=project_id, platform="labelstudio", doc_id=ref, member="",
                                       source="", kind=kind, dedup_key=key, once=once)
    if not new:
        return {"status": "duplicate", "event_id": event_id}, 200
    try:
        enqueue(event_id)
    except Exception:  # the event is stored: the worker's sweep enqueues it again
        logger.exception("enqueue of event %d failed; the sweep will pick it up", event_id)
    return {"status": "queued", "event_id": event_id}, 202
