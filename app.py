"""prelabel's web process: receives platform webhooks, records them, enqueues, answers 202.

    gunicorn -c gunicorn.conf.py "app:create_app()"

It never calls the platform inside a request and never imports TensorFlow: the worker (jobs.py) does the work.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any, Mapping

from flask import Blueprint, Flask, current_app, jsonify, request
from sqlalchemy import text

from config import Settings
from formats.tagtog import FormatError, parse_webhook
import api
import dashboard
from api import ApiError, require_json
from observability import Metrics, setup_logging
from receivers import ReceiveError, receive_labelstudio, secret_ok
from storage import Store

logger = logging.getLogger(__name__)
bp = Blueprint("prelabel", __name__)


def _settings() -> Settings:
    return current_app.extensions["prelabel.settings"]


def _store() -> Store:
    return current_app.extensions["prelabel.store"]


def _check_basic(username: str, password: str) -> None:
    if not username:
        return
    auth = request.authorization
    ok = auth is not None and auth.type == "basic"
    # compare both, always, in constant time: no early exit that tells which part was wrong
    user_ok = hmac.compare_digest((auth.username or "").encode() if ok else b"", username.encode())
    pass_ok = hmac.compare_digest((auth.password or "").encode() if ok else b"", password.encode())
    if not (ok and user_ok and pass_ok):
        raise ApiError(401, "webhook credentials missing or wrong (HTTP Basic)",
                       {"WWW-Authenticate": 'Basic realm="prelabel"'})


@bp.post("/webhooks/tagtog")
def tagtog_webhook() -> Any:
    s = _settings()
    _check_basic(s.webhook_username, s.webhook_password)
    require_json()  # tagtog sends its tagtogID format as application/json
    body = request.get_data(cache=False)
    try:
        hook = parse_webhook(request.headers, body)
    except FormatError as exc:
        raise ApiError(400, str(exc)) from None
    if hook.source == "API" and s.ignore_api_source:
        # prelabel's own uploads come back as API saves: acting on them would loop
        return jsonify(status="ignored", reason="save made through the API (IGNORE_API_SOURCE=true)"), 200
    store = _store()
    project_id = store.find_project_id("tagtog", hook.owner, hook.project)
    if project_id is None:
        raise ApiError(404, f"project {hook.owner}/{hook.project} is not served by this prelabel "
                            "(add it to TAGTOG_PROJECTS)")
    key = hashlib.sha256(json.dumps(["tagtog", hook.owner, hook.project, hook.docid, hook.member, hook.source,
                                     hook.status]).encode() + b"\0" + body).hexdigest()
    event_id, new = store.record_event(project_id=project_id, platform="tagtog", doc_id=hook.docid,
                                       member=hook.member, source=hook.source, kind=hook.status, dedup_key=key)
    if not new:
        return jsonify(status="duplicate", event_id=event_id), 200
    try:
        current_app.extensions["prelabel.enqueue"](event_id)
    except Exception:  # the event is stored: the worker's sweep enqueues it again
        logger.exception("enqueue of event %d failed; the sweep will pick it up", event_id)
    return jsonify(status="queued", event_id=event_id), 202


@bp.post("/webhooks/labelstudio")
def labelstudio_webhook() -> Any:
    if not secret_ok(request.headers, _settings()):
        raise ApiError(401, f"webhook secret missing or wrong (header {_settings().labelstudio_webhook_header})")
    require_json()
    request.max_content_length = _settings().labelstudio_max_body_bytes
    try:
        answer, status = receive_labelstudio(request.get_data(cache=False), _store(),
                                             current_app.extensions["prelabel.enqueue"])
    except ReceiveError as exc:
        raise ApiError(exc.status, exc.message, exc.headers) from None
    return jsonify(answer), status


@bp.get("/metrics")
def metrics() -> Any:
    """Prometheus text format (observability.py says what each metric means)."""
    token = _settings().metrics_token
    if token:
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {token}".encode()):
            raise ApiError(401, "metrics need Authorization: Bearer <METRICS_TOKEN>")
    body, content_type = current_app.extensions["prelabel.metrics"].render()
    return body, 200, {"Content-Type": content_type}


@bp.after_app_request
def count_webhook(response: Any) -> Any:
    """prelabel_webhooks_total{platform, outcome}: the answer's status word (queued, duplicate, ignored) or, for
    a refusal, the HTTP code (e.g. 401, 400)."""
    if request.path.startswith("/webhooks/") and request.method == "POST":
        platform = request.path.removeprefix("/webhooks/").strip("/") or "unknown"
        body = response.get_json(silent=True) if response.is_json else None
        outcome = body.get("status") if isinstance(body, dict) and response.status_code < 400 else None
        current_app.extensions["prelabel.metrics"].webhooks.labels(
            platform if platform in ("tagtog", "labelstudio") else "unknown",
            str(outcome or response.status_code)).inc()
    return response


@bp.get("/healthz")
def healthz() -> Any:
    try:
        with _store().engine.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception:
        logger.exception("health check: database unreachable")
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory: settings from the environment (.env loaded), then ``test_config`` overrides."""
    settings = Settings.load(test_config)
    setup_logging(settings.log_level, settings.log_format)
    app = Flask(__name__)
    store = Store(settings.db_url).prepare(settings.projects)
    app.extensions["prelabel.settings"] = settings
    app.extensions["prelabel.store"] = store
    app.extensions["prelabel.metrics"] = Metrics(store, settings.primary_metric)
    import jobs  # noqa: PLC0415 - the queue only; jobs imports no model code at import time

    app.extensions["prelabel.enqueue"] = jobs.enqueue_event
    app.extensions["prelabel.retrain"] = jobs.retrain
    app.extensions["prelabel.refresh"] = jobs.refresh_champion
    app.extensions["prelabel.cv"] = jobs.cross_validate
    app.extensions["prelabel.reconcile"] = jobs.reconcile
    api.harden(app, settings.max_body_bytes)
    app.register_blueprint(bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(dashboard.bp)
    return app
