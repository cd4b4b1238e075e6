"""JSON API v1 (documented in openapi.json): projects, model versions, promotion, downloads, what to annotate
next, and the event log.

Reads need ``Authorization: Bearer <API_TOKEN>`` when API_TOKEN is set. Calls that change state (retrain,
promote, retry, reconcile) need ``Authorization: Bearer <ADMIN_TOKEN>``; without an ADMIN_TOKEN they are refused.
The web process never loads a model: ``next`` ranks the champion's stored probabilities with numpy, in a
child process (web/reads.py).
"""
from __future__ import annotations

import hmac
import io
import logging
import threading
import zipfile
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Mapping

from flask import Blueprint, Flask, Request, current_app, jsonify, request, send_file
from flask.json.provider import DefaultJSONProvider
from werkzeug.routing import IntegerConverter

from annotation_client import platform_class
from config import Settings, setup_logging
from formats import strictjson
from model.names import BATCH_MODES, STRATEGIES
from storage import Store

MAX_ID = 2**63 - 1  # SQLite's and PostgreSQL's BIGINT
logger = logging.getLogger(__name__)
bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
OPENAPI = Path(__file__).resolve().parent / "openapi.json"  # the API contract, shipped with the package
MAX_N = 1000


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


class StrictJSONProvider(DefaultJSONProvider):
    """``request.get_json`` through formats.strictjson: duplicate keys, invalid UTF-8 and deep nesting are 400s
    (FormatError is a ValueError, which Flask turns into 400), never 500s."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return strictjson.loads(s, "the JSON body")


class StrictRequest(Request):
    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        # Flask hides the reason outside debug mode; the sender needs it (it names no secret)
        raise ApiError(400, str(e) if e is not None else "the body is not JSON")


class IdConverter(IntegerConverter):
    """``<int:...>`` in prelabel's routes: a database id fits a signed 64-bit integer, so a longer number is a 404
    (found by schemathesis: the driver raised OverflowError, a 500)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, *args, **{**kwargs, "max": min(kwargs.get("max") or MAX_ID, MAX_ID)})


def new_app(import_name: str, test_config: Mapping[str, Any] | None = None) -> tuple[Flask, Settings, Store]:
    """What every prelabel Flask process starts with: settings from the environment (.env loaded), then
    ``test_config``; logging; the store (tables created, served projects registered); the queue to enqueue on."""
    settings = Settings.load(test_config)
    setup_logging(settings.log_level, settings.log_format)
    app = Flask(import_name)
    store = Store(settings.db_url).prepare(settings.projects)
    app.extensions["prelabel.settings"] = settings
    app.extensions["prelabel.store"] = store
    app.extensions["prelabel.costly"] = threading.BoundedSemaphore(settings.max_costly_reads)  # web/api.costly
    from web.reads import ReadPool  # noqa: PLC0415

    app.extensions["prelabel.reads"] = ReadPool(settings.db_url, settings.max_costly_reads)  # started on first use
    from worker import jobs  # noqa: PLC0415 - the queue only; jobs imports no model code at import time

    app.extensions["prelabel.enqueue"] = jobs.enqueue_event
    return app, settings, store


def harden(app: Any, max_body_bytes: int, internal: str = "internal error; see the server log") -> None:
    """What every prelabel Flask app shares: bounded ids in URLs, strict JSON in, a body size limit (413), JSON
    errors out. Call it before registering blueprints (their routes are compiled with its converters)."""
    app.url_map.converters["int"] = IdConverter
    app.json = StrictJSONProvider(app)
    app.request_class = StrictRequest
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = max_body_bytes
    register_json_errors(app, internal)


def require_json() -> None:
    """415 unless the body says it is JSON (``application/json``, any charset, or ``+json``)."""
    if not request.is_json:
        raise ApiError(415, f"the body must be JSON (Content-Type: application/json), got "
                            f"{(request.mimetype or 'no Content-Type')[:100]!r}")


def register_json_errors(app: Any, internal: str = "internal error; see the server log") -> None:
    """Every error as a JSON body ``{"error": ...}``: ApiError with its status, HTTP errors (404, 405, 413, ...),
    and anything unexpected as 500 with ``internal`` (the traceback goes to the log, never to the client)."""
    from werkzeug.exceptions import HTTPException  # noqa: PLC0415

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Any:
        return jsonify(error=exc.message), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify(error=internal), 500


def _store() -> Store:
    return current_app.extensions["prelabel.store"]


def _bearer_ok(token: str) -> bool:
    got = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(got.encode(), f"Bearer {token}".encode())


def _bearer(token: str, what: str) -> None:
    if not _bearer_ok(token):
        raise ApiError(401, f"{what} token missing or wrong (Authorization: Bearer ...)",
                       {"WWW-Authenticate": 'Bearer realm="prelabel"'})


@bp.before_request
def read_token() -> None:
    """Reads need the API token, or the admin token: it grants everything the API token grants (one header
    carries one token, so a route that needs admin must not also demand the read token)."""
    s = current_app.extensions["prelabel.settings"]
    if request.method == "GET" and s.api_token and request.endpoint != "api_v1.openapi":
        if not _bearer_ok(s.admin_token):
            _bearer(s.api_token, "API")


def admin() -> None:
    token = current_app.extensions["prelabel.settings"].admin_token
    if not token:
        raise ApiError(403, "admin calls are disabled: set ADMIN_TOKEN")
    _bearer(token, "admin")


def _project(project_id: int) -> dict[str, Any]:
    summary = _store().project_summary(project_id)
    if summary is None:
        raise ApiError(404, f"no project {project_id}")
    return summary


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None
    if not lo <= v <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, got {v}")
    return v


def costly(view: Callable[..., Any]) -> Callable[..., Any]:
    """At most MAX_COSTLY_READS of these reads at once per web process (the rest: 503 with Retry-After): each reads
    a whole pool, so without a bound a few dozen parallel calls hold every thread and the webhooks that platforms
    send (Label Studio waits 1 s, once) wait behind them."""
    @wraps(view)
    def limited(*args: Any, **kwargs: Any) -> Any:
        gate = current_app.extensions["prelabel.costly"]
        if not gate.acquire(blocking=False):
            raise ApiError(503, "busy: too many costly reads (next, download) at once; retry shortly",
                           {"Retry-After": "2"})
        try:
            return view(*args, **kwargs)
        finally:
            gate.release()
    return limited


@bp.get("/openapi.json")
def openapi() -> Any:
    return current_app.response_class(OPENAPI.read_text(), mimetype="application/json")


@bp.get("/projects")
def projects() -> Any:
    return jsonify(projects=_store().list_projects())


@bp.get("/projects/<int:project_id>")
def project(project_id: int) -> Any:
    summary = _project(project_id)
    return jsonify({**summary, "stop": stop_of(summary)})


def stop_of(summary: dict[str, Any]) -> dict[str, Any]:
    """The stopping signal of a project (model/stopping.py) under STOP_ROUNDS, STOP_KAPPA and STOP_MIN_LABELS."""
    from model.stopping import stop_signal  # noqa: PLC0415

    s = current_app.extensions["prelabel.settings"]
    return stop_signal(summary.get("stability") or [], s.stop_rounds, s.stop_kappa, s.stop_min_labels)


@bp.get("/projects/<int:project_id>/versions")
def versions(project_id: int) -> Any:
    _project(project_id)
    return jsonify(versions=_store().list_models(project_id))


@bp.get("/projects/<int:project_id>/versions/<int:version>")
def version(project_id: int, version: int) -> Any:
    v = _store().get_version(project_id, version)
    if v is None:
        raise ApiError(404, f"project {project_id} has no version {version}")
    return jsonify(v)


@bp.get("/projects/<int:project_id>/versions/<int:version>/download")
@costly
def download(project_id: int, version: int) -> Any:
    """The files of a version (e.g. model.h5, vocab.json, meta.json), as one zip. Admin only: a model can
    reproduce what it learned from the documents."""
    admin()
    v = _store().get_version(project_id, version)
    if v is None:
        raise ApiError(404, f"project {project_id} has no version {version}")
    if not v["path"]:  # a failed or interrupted version: no files (and Path("") would be the server's folder)
        raise ApiError(409, f"version {version} has no files (status {v['status']}: {v.get('reason') or ''})"[:300])
    folder = Path(v["path"])
    if not folder.is_dir():
        raise ApiError(410, f"the files of version {version} are gone from the server")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.iterdir()):
            if f.is_file():
                z.write(f, f"v{version}/{f.name}")
    buf.seek(0)
    return send_file(buf, mimetype="application/zip", as_attachment=True,
                     download_name=f"project{project_id}-v{version}.zip")


@bp.post("/projects/<int:project_id>/retrain")
def retrain(project_id: int) -> Any:
    admin()
    _project(project_id)
    _store().request_retrain(project_id)
    current_app.extensions["prelabel.retrain"](project_id)
    return jsonify(status="queued", project_id=project_id), 202


@bp.post("/projects/<int:project_id>/reconcile")
def reconcile(project_id: int) -> Any:
    """Queue a reconciliation: labels, removals and documents the platform has and prelabel missed (lost
    webhooks) are taken over; the counts land on the project (``last_reconcile``)."""
    admin()
    _project(project_id)
    current_app.extensions["prelabel.reconcile"](project_id)
    return jsonify(status="queued", project_id=project_id), 202


@bp.post("/projects/<int:project_id>/versions/<int:version>/promote")
def promote(project_id: int, version: int) -> Any:
    """Make a version the champion (rollback); pre-labels and ``next`` then come from it."""
    admin()
    _project(project_id)
    body: Any = {}
    if request.get_data():  # the body is optional: {"reason": "..."}
        require_json()
        body = request.get_json()
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object, e.g. {\"reason\": \"...\"}")
    reason = str(body.get("reason") or "promoted by hand")[:500]
    try:
        v = _store().promote(project_id, version, reason)
    except KeyError as exc:
        raise ApiError(404, str(exc.args[0])) from None
    except ValueError as exc:
        raise ApiError(409, str(exc)) from None
    current_app.extensions["prelabel.refresh"](project_id)
    return jsonify(v), 200


@bp.post("/projects/<int:project_id>/rollback")
def rollback(project_id: int) -> Any:
    """Make the previous champion (the newest retired version older than the champion) the champion again."""
    admin()
    summary = _project(project_id)
    champion = summary["champion"]
    if champion is None:
        raise ApiError(409, "no champion yet: nothing to roll back")
    older = [v for v in _store().list_models(project_id)
             if v["status"] == "retired" and v["version"] < champion["version"]]
    if not older:
        raise ApiError(409, f"v{champion['version']} has no earlier champion to roll back to")
    target = max(older, key=lambda v: v["version"])
    v = _store().promote(project_id, target["version"], f"rollback from v{champion['version']}")
    current_app.extensions["prelabel.refresh"](project_id)
    return jsonify(v), 200


@bp.post("/projects/<int:project_id>/cross-validate")
def cross_validate(project_id: int) -> Any:
    """Queue a k-fold cross-validation (default 10) of the current configuration; read it later on the champion
    version (``cv``). For small data: each fold is a full fit."""
    admin()
    summary = _project(project_id)
    folds = _int_arg("folds", 10, 2, 20)
    if summary["champion"] is None:
        raise ApiError(409, "no champion yet: cross-validation is stored on the champion version")
    current_app.extensions["prelabel.cv"](project_id, folds)
    return jsonify(status="queued", project_id=project_id, folds=folds), 202


@bp.get("/projects/<int:project_id>/next")
@costly
def next_documents(project_id: int) -> Any:
    """Documents to annotate next, best first, with their scores, from the champion's stored probabilities;
    computed in a process of the web's read pool (web/reads.py), so the webhooks this process serves never wait
    on it."""
    from model.query import QueryError, compile_regex  # noqa: PLC0415
    from web.reads import NextQuery, ReadFailed  # noqa: PLC0415

    s = current_app.extensions["prelabel.settings"]
    stop = stop_of(_project(project_id))
    strategy = request.args.get("strategy", s.al_strategy)
    if strategy not in STRATEGIES:
        raise ApiError(400, f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    batch = request.args.get("batch", s.al_batch)
    if batch not in BATCH_MODES:
        raise ApiError(400, f"unknown batch {batch!r}; known: {', '.join(BATCH_MODES)}")
    n = _int_arg("n", s.prelabel_k, 0, MAX_N)
    regex = request.args.get("regex", s.al_regex) or None
    try:
        compile_regex(regex)  # a refused pattern is a 400 here, without taking a read's process
    except QueryError as exc:
        raise ApiError(400, str(exc)) from None
    q = NextQuery(strategy=strategy, batch=batch, n=n, regex=regex, label=request.args.get("label", s.al_label) or None,
                  cold_start_min=s.cold_start_min)
    try:
        status, body = current_app.extensions["prelabel.reads"].next_documents(project_id, q, {"stop": stop})
    except ReadFailed as exc:
        raise ApiError(503, f"{exc}; retry shortly", {"Retry-After": "2"}) from None
    return current_app.response_class(body, status=status, mimetype="application/json")


@bp.get("/projects/<int:project_id>/suspect-labels")
def suspect_labels(project_id: int) -> Any:
    """The labels the round's out-of-fold model confidently disagrees with, most likely wrong first (computed
    by the worker each round: model/suspects.py), each with a link to the document on its platform."""
    summary = _project(project_id)
    total, items = _store().suspects(project_id, _int_arg("limit", 100, 1, 1000), _int_arg("offset", 0, 0, 10**9))
    platform = platform_class(summary["platform"])
    settings = current_app.extensions["prelabel.settings"]
    for it in items:
        it["url"] = (platform.document_url(settings, summary["owner"], summary["name"], it["platform_id"])
                     if it["platform_id"] else None)
    return jsonify(project_id=project_id, count=total, suspects=items)


@bp.post("/projects/<int:project_id>/suspect-labels/<int:document_id>/dismiss")
def dismiss_suspect(project_id: int, document_id: int) -> Any:
    """A person checked the label and keeps it: the document leaves the list, and is not listed again with
    this label (saving the label again on the platform does the same)."""
    admin()
    _project(project_id)
    if not _store().dismiss_suspect(project_id, document_id, "dismissed through the API"):
        raise ApiError(404, f"document {document_id} is not on project {project_id}'s list of likely wrong labels")
    return jsonify(status="dismissed", project_id=project_id, document_id=document_id)


@bp.get("/projects/<int:project_id>/events")
def events(project_id: int) -> Any:
    _project(project_id)
    state = request.args.get("state") or None
    if state and state not in ("queued", "processing", "done", "failed"):
        raise ApiError(400, f"state must be queued, processing, done or failed, got {state!r}")
    return jsonify(events=_store().list_events(project_id, state, _int_arg("limit", 100, 1, 1000)))


@bp.get("/events/<int:event_id>")
def event(event_id: int) -> Any:
    ev = _store().get_event(event_id)
    if ev is None:
        raise ApiError(404, f"no event {event_id}")
    return jsonify(ev)


@bp.post("/events/<int:event_id>/retry")
def retry_event(event_id: int) -> Any:
    """Put a failed event back in the queue (after fixing its cause on the platform, for instance)."""
    admin()
    store = _store()
    ev = store.get_event(event_id)
    if ev is None:
        raise ApiError(404, f"no event {event_id}")
    if ev["state"] != "failed":
        raise ApiError(409, f"event {event_id} is {ev['state']}; only failed events can be retried")
    store.requeue_event(event_id, ev["error"], 0)
    current_app.extensions["prelabel.enqueue"](event_id)
    return jsonify(status="queued", event_id=event_id), 202
