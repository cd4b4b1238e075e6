"""Webhooks: ``POST /webhooks/<platform>`` for every platform in the registry. A delivery is verified and parsed
by its platform (no I/O), recorded in one short transaction and enqueued; the answer is 202 in milliseconds.

Label Studio sends each webhook once, synchronously, with a 1 s timeout and no retries (labelstudio.md §3); the
worker's reconciliation takes over what is lost. The ML backend's ``POST /webhook`` uses ``receive`` too.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from flask import Blueprint, current_app, jsonify, request

from annotation_client import PLATFORMS, Ignored, Platform, WebhookRejected, make_platform
from storage import Store

from .api import ApiError, require_json

logger = logging.getLogger(__name__)
bp = Blueprint("prelabel", __name__)


def receive(platform: Platform, headers: Mapping[str, str], body: bytes, store: Store,
            enqueue: Callable[[int, bool], None]) -> tuple[dict[str, Any], int]:
    """Record one delivery already verified; returns the JSON answer and its status. Raises WebhookRejected.
    ``enqueue(event_id, known)``: a delivery for a document prelabel has stored is queued first, so a flood of
    deliveries for documents it has never seen does not hold up a person's label."""
    event = platform.parse_webhook(headers, body)
    if isinstance(event, Ignored) and not event.project:
        return {"status": "ignored", "reason": event.reason}, 200
    project_id = store.find_project_id(platform.name, event.owner, event.project)
    if project_id is None:
        raise WebhookRejected(404, platform.not_served(event.owner, event.project))
    if isinstance(event, Ignored):
        return {"status": "ignored", "reason": event.reason}, 200
    event_id, new = store.record_event(project_id=project_id, platform=platform.name, doc_id=event.doc_id,
                                       member=event.member, source=event.source, kind=event.kind,
                                       dedup_key=event.dedup_key, once=event.once)
    if not new:
        return {"status": "duplicate", "event_id": event_id}, 200
    try:
        enqueue(event_id, store.document_known(project_id, event.doc_id))
    except Exception:  # the event is stored: the worker's sweep enqueues it again
        logger.exception("enqueue of event %d failed; the sweep will pick it up", event_id)
    return {"status": "queued", "event_id": event_id}, 202


def web_platform(name: str) -> Platform:
    """The web process's platform ``name`` (webhook checks only: it never calls the platform)."""
    cache = current_app.extensions.setdefault("prelabel.platforms", {})
    if name not in cache:
        cache[name] = make_platform(name, current_app.extensions["prelabel.settings"])
    return cache[name]


def webhook(name: str) -> Any:
    """``POST /webhooks/<name>``: one route per platform in the registry that receives webhooks (openapi.json)."""
    platform = web_platform(name)
    try:
        platform.verify_webhook(request.headers)
        require_json()  # every platform sends JSON
        if platform.max_webhook_bytes is not None:
            request.max_content_length = platform.max_webhook_bytes
        answer, status = receive(platform, request.headers, request.get_data(cache=False), current_app.extensions[
            "prelabel.store"], current_app.extensions["prelabel.enqueue"])
    except WebhookRejected as exc:
        raise ApiError(exc.status, exc.message, exc.headers) from None
    return jsonify(answer), status


for _name, _cls in PLATFORMS.items():
    if _cls.receives_webhooks:
        bp.add_url_rule(f"/webhooks/{_name}", f"{_name}_webhook", webhook, methods=["POST"], defaults={"name": _name})


@bp.after_app_request
def count_webhook(response: Any) -> Any:
    """prelabel_webhooks_total{platform, outcome}: the answer's status word (queued, duplicate, ignored) or, for
    a refusal, the HTTP code (e.g. 401, 400)."""
    if request.path.startswith("/webhooks/") and request.method == "POST":
        platform = request.path.removeprefix("/webhooks/").strip("/") or "unknown"
        body = response.get_json(silent=True) if response.is_json else None
        outcome = body.get("status") if isinstance(body, dict) and response.status_code < 400 else None
        current_app.extensions["prelabel.metrics"].webhooks.labels(
            platform if platform in PLATFORMS else "unknown", str(outcome or response.status_code)).inc()
    return response
