"""The platform interface, pure parts: registry, webhook verification and parsing, event plans (no I/O)."""
from __future__ import annotations

import base64
import hashlib
import inspect
import json

import pytest

from annotation_client import (PLATFORMS, EventRejected, Ignored, Platform, WebhookEvent, WebhookRejected,
                               make_client, make_platform)
from config import Settings


def test_every_registered_platform_implements_the_interface():
    for name, cls in PLATFORMS.items():
        assert cls.name == name and issubclass(cls, Platform) and not inspect.isabstract(cls)
        assert isinstance(make_platform(name, Settings()), cls)
    with pytest.raises(ValueError, match="unknown platform 'nope'.*labelstudio.*tagtog"):
        make_platform("nope", Settings())
    with pytest.raises(ValueError, match="no HTTP client"):
        make_client("local")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_tagtog_webhooks_verified_and_parsed_without_io():
    t = make_platform("tagtog", Settings(webhook_username="hook", webhook_password="s3cret"))
    t.verify_webhook(basic("hook", "s3cret"))
    for headers in ({}, basic("hook", "wrong"), basic("other", "s3cret"), {"Authorization": "Bearer s3cret"}):
        with pytest.raises(WebhookRejected) as exc:
            t.verify_webhook(headers)
        assert exc.value.status == 401 and "WWW-Authenticate" in exc.value.headers
    body = b'{"owner": "alice", "project": "spam", "tagtogID": "d1"}'
    headers = {"X-tagtog-onPushSave-source": "GUI", "X-tagtog-onPushSave-status": "updated"}
    ev = t.parse_webhook(headers, body)
    assert isinstance(ev, WebhookEvent) and (ev.owner, ev.project, ev.doc_id, ev.kind, ev.member, ev.source) == (
        "alice", "spam", "d1", "updated", "master", "GUI")
    # the key of the code before the platform interface: a delivery replayed across the upgrade is a duplicate
    assert ev.dedup_key == hashlib.sha256(json.dumps(["tagtog", "alice", "spam", "d1", "master", "GUI", "updated"])
                                          .encode() + b"\0" + body).hexdigest()
    assert isinstance(t.parse_webhook({**headers, "X-tagtog-onPushSave-source": "API"}, body), Ignored)
    with pytest.raises(WebhookRejected, match="missing field"):
        t.parse_webhook({}, b'{"owner": "alice"}')
    assert t.plan_event("updated", "d1", "master").action == "read"
    assert t.plan_event("updated", "d1", "other").action == "ignore"
    assert t.plan_event("reconcile", "*", "").action == "reconcile"


def test_labelstudio_webhooks_verified_and_parsed_without_io():
    ls = make_platform("labelstudio", Settings(labelstudio_webhook_secret="x" * 20))
    ls.verify_webhook({"X-Prelabel-Secret": "x" * 20})
    with pytest.raises(WebhookRejected) as exc:
        ls.verify_webhook({"X-Prelabel-Secret": "y"})
    assert exc.value.status == 401
    created = {"action": "ANNOTATION_CREATED", "project": {"id": 3}, "task": {"id": 7},
               "annotation": {"id": 11, "result": [{"value": {"choices": ["spam"]}}], "updated_at": "t1"}}
    ev = ls.parse_webhook({}, json.dumps(created).encode())
    assert isinstance(ev, WebhookEvent) and (ev.owner, ev.project, ev.doc_id, ev.once) == ("ls", "3", "7", True)
    skipped = {**created, "annotation": {"id": 12, "result": [], "was_cancelled": True}}
    ig = ls.parse_webhook({}, json.dumps(skipped).encode())
    assert isinstance(ig, Ignored) and ig.project == "3"  # the project is still checked (404 when not served)
    assert ls.plan_event("ANNOTATIONS_DELETED", "annotations:4,5", "").annotation_ids == ("4", "5")
    assert [ls.plan_event(k, "*", "").action for k in ("PROJECT_UPDATED", "START_TRAINING", "reconcile")] == [
        "refresh_scheme", "retrain", "reconcile"]
    with pytest.raises(EventRejected, match="unknown Label Studio event kind"):
        ls.plan_event("SOMETHING", "*", "")
    with pytest.raises(WebhookRejected) as exc:
        ls.parse_webhook({}, b"{")
    assert exc.value.status == 400
