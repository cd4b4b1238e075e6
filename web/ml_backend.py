"""Label Studio ML-backend protocol (labelstudio.md §4), served by its own process:

    gunicorn -c gunicorn.conf.py -b 127.0.0.1:9090 "web.ml_backend:create_app()"   (or "ml_backend:create_app()")

Add ``http://<host>:9090`` in Label Studio's project settings -> Model. Requests are routed by the project id
Label Studio sends (``"project": "<id>.<created_ts>"``); the project must be one of LABELSTUDIO_PROJECTS.

- ``GET /health``: answers at once (Label Studio waits 1 s).
- ``POST /setup``: the champion's ``model_version`` from the database; never loads a model (Label Studio waits 3 s).
- ``POST /predict``: one result per task, in order, from the champion. The champion is loaded once per process and
  kept in memory until another version becomes champion; ``predict_on_batch`` scores the whole batch.
- ``POST /webhook``: the events of the auto-created webhook (stored and queued like ``/webhooks/labelstudio``),
  and ``START_TRAINING`` (queues a retrain).
- ``GET /versions``: prelabel's model versions of the project.

This is the one process besides the worker that loads models: the web process (app.py) never does.
It belongs to the web side: it records and enqueues like the web process, and imports nothing of the worker
but the queue.
"""
from __future__ import annotations

import hmac
import logging
import threading
from pathlib import Path
from typing import Any, Mapping

from flask import Blueprint, Flask, current_app, jsonify, request

from annotation_client import WebhookRejected
from annotation_client.labelstudio import OWNER as LABELSTUDIO_OWNER
from config import Settings
from formats.labelstudio import (FormatError, build_prediction, model_version_name, parse_label_config,
                                 parse_predict_request, parse_project_ref, task_text)
from model.names import plain
from storage import ModelVersion, Project, Store

from .api import ApiError, harden, new_app, require_json
from .webhooks import receive, web_platform

logger = logging.getLogger(__name__)
bp = Blueprint("ml_backend", __name__)


class Champions:
    """The champion model of each project, loaded on first use and kept until the champion changes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._models: dict[int, tuple[int, Any]] = {}
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()

    def champion(self, project_id: int) -> tuple[int, int, str] | None:
        """(version id, version, folder) of the champion, from the database."""
        with self.store.session() as s:
            p = s.get(Project, project_id)
            if p is None or not p.champion_id:
                return None
            mv = s.get(ModelVersion, p.champion_id)
            return mv.id, mv.version, mv.path

    def get(self, project_id: int) -> tuple[int, Any] | None:
        """(version, classifier) of the champion, or None when the project has none yet."""
        champ = self.champion(project_id)
        if champ is None:
            return None
        version_id, version, path = champ
        cached = self._models.get(project_id)
        if cached is not None and cached[0] == version_id:
            return version, cached[1]
        with self._guard:
            lock = self._locks.setdefault(project_id, threading.Lock())
        with lock:  # one load per project, however many requests arrive meanwhile
            cached = self._models.get(project_id)
            if cached is None or cached[0] != version_id:
                from model.factory import load_classifier  # noqa: PLC0415 - TensorFlow loads here, once

                clf = load_classifier(Path(path))
                self._models[project_id] = (version_id, clf)
                logger.info("project %d: loaded champion v%d from %s", project_id, version, path)
            return version, self._models[project_id][1]


def _settings() -> Settings:
    return current_app.extensions["prelabel.settings"]


def _store() -> Store:
    return current_app.extensions["prelabel.store"]


def _basic_ok() -> bool:
    s = _settings()
    if not s.ml_basic_auth_user:
        return True
    auth = request.authorization
    ok = auth is not None and auth.type == "basic"
    user_ok = hmac.compare_digest((auth.username or "").encode() if ok else b"", s.ml_basic_auth_user.encode())
    pass_ok = hmac.compare_digest((auth.password or "").encode() if ok else b"", s.ml_basic_auth_pass.encode())
    return ok and user_ok and pass_ok


def _require_basic() -> None:
    if not _basic_ok():
        raise ApiError(401, "ML backend credentials missing or wrong (HTTP Basic; set them in Label Studio's "
                                "model settings)")


def _json() -> Mapping[str, Any]:
    require_json()
    body = request.get_json()
    if not isinstance(body, Mapping):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _project_id(ref: Any) -> int:
    try:
        ls_id = parse_project_ref(ref)
    except FormatError as exc:
        raise ApiError(400, str(exc)) from None
    pid = _store().find_project_id("labelstudio", LABELSTUDIO_OWNER, str(ls_id))
    if pid is None:
        raise ApiError(404, f"prelabel does not serve Label Studio project {ls_id}: add {ls_id} to "
                                "LABELSTUDIO_PROJECTS and restart prelabel")
    return pid


@bp.get("/")
@bp.get("/health")
def health() -> Any:
    return jsonify(status="UP", model_class="prelabel"), 200


@bp.post("/setup")
def setup() -> Any:
    _require_basic()
    pid = _project_id(_json().get("project"))
    champ = current_app.extensions["prelabel.champions"].champion(pid)
    return jsonify(model_version=model_version_name(champ[1] if champ else None)), 200


@bp.post("/predict")
def predict() -> Any:
    _require_basic()
    try:
        ls_ref, tasks, config_xml = parse_predict_request(_json())
    except FormatError as exc:
        raise ApiError(400, str(exc)) from None
    pid = _project_id(ls_ref)
    with _store().session() as s:
        control = s.get(Project, pid).label_name
    try:
        config = parse_label_config(config_xml, control)
        texts = [task_text(t, config) for t in tasks]
    except FormatError as exc:
        raise ApiError(400, str(exc)) from None
    loaded = current_app.extensions["prelabel.champions"].get(pid)
    if loaded is None:
        # one empty list of predictions per task: Label Studio stores nothing and logs nothing (an empty
        # "results" made it log "ML backend returns an incorrect response" on every task an annotator opened)
        logger.info("project %d: no champion yet; /predict answers no prediction for its %d task(s)", pid,
                    len(tasks))
        return jsonify(results=[[] for _ in tasks]), 200
    version, clf = loaded
    from model.embed import quick_vectors  # noqa: PLC0415 - loaded with the champion already

    with quick_vectors():  # a task opened by an annotator: its own small batch, not a 32-row one (model/embed.py)
        proba = clf.predict_proba(texts)
    classes = list(clf.classes_)
    unknown = plain(c for c in classes if c not in config.choices)
    if unknown:
        raise ApiError(409, f"the champion v{version} predicts {unknown}, which the label config no longer has; "
                                "it is retrained on the next annotation")
    mv = model_version_name(version)
    results = []
    th = clf.thresholds()
    for row in proba:
        if getattr(clf, "multilabel_", False):
            value: Any = [c for c, p, t in zip(classes, row, th) if p >= t]
            score = float(sum(p if p >= t else 1.0 - p for p, t in zip(row, th)) / len(row))
        else:
            k = int(row.argmax())
            value, score = classes[k], float(row[k])
        results.append(build_prediction(config, value, score, mv))
    return jsonify(results=results, model_version=mv), 200


@bp.post("/webhook")
def webhook() -> Any:
    # the webhook Label Studio creates for an ML backend has no custom header: Basic or the secret will do
    s = _settings()
    configured = bool(s.ml_basic_auth_user or s.labelstudio_webhook_secret)
    basic = bool(s.ml_basic_auth_user) and _basic_ok()
    platform = web_platform("labelstudio")
    secret = bool(s.labelstudio_webhook_secret) and platform.secret_ok(request.headers)
    if configured and not (basic or secret):
        raise ApiError(401, "webhook credentials missing or wrong (HTTP Basic or the secret header)")
    require_json()
    try:
        answer, status = receive(platform, request.headers, request.get_data(cache=False), _store(),
                                 current_app.extensions["prelabel.enqueue"])
    except WebhookRejected as exc:
        raise ApiError(exc.status, exc.message) from None
    return jsonify(answer), (201 if status == 202 else status)


@bp.get("/versions")
def versions() -> Any:
    """The model versions of a project (``?project=``), newest first. Label Studio 1.23 asks without a project
    (``GET /api/ml/{id}/versions``): then those of every Label Studio project prelabel serves (one, usually)."""
    _require_basic()
    ref = request.args.get("project", "")
    store = _store()
    if ref:
        pids = [_project_id(ref)]
    else:  # the projects of LABELSTUDIO_PROJECTS prelabel knows
        pids = [pid for spec in _settings().labelstudio_projects
                if (pid := store.find_project_id("labelstudio", LABELSTUDIO_OWNER, spec.name)) is not None]
    numbers = sorted({v["version"] for pid in pids for v in store.list_models(pid)}, reverse=True)
    return jsonify(versions=[model_version_name(v) for v in numbers]), 200


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The ML-backend application: settings from the environment (.env loaded), then ``test_config``."""
    app, settings, store = new_app(__name__, test_config)
    app.extensions["prelabel.champions"] = Champions(store)
    from model.embed import use_store  # noqa: PLC0415 - numpy only; TensorFlow loads with the first champion

    # the worker embedded the project's documents already: a task the annotator opens is read, not embedded
    use_store(settings.embedding_cache_path)
    # a predict batch carries every selected task: Label Studio's body limit, not the API's
    harden(app, settings.labelstudio_max_body_bytes, "internal error in prelabel's ML backend; see its log")
    app.register_blueprint(bp)
    return app
