"""The dashboard: server-rendered HTML pages with inline SVG plots (plots.py), for people who would rather look at
pictures than JSON.

    /dashboard                       every project: champion, labels, events; the workers and their heartbeats
    /dashboard/projects/<id>         one project: versions, learning curve, loss curves, confusion matrix, false
                                     predictions with their texts, the queue and recent events
    ...?version=<n>                  the same for version n instead of the champion

Text from documents is escaped by Jinja's autoescaping. When API_TOKEN is set, the pages ask for HTTP Basic
credentials with the token as the password (any user name), which a browser can send; the JSON API keeps its
Bearer header.
"""
from __future__ import annotations

import hmac
from typing import Any

from annotation_client import platform_class
from flask import Blueprint, current_app, render_template, request
from sqlalchemy import func, select

from model.names import PICK_KINDS
from storage import Document, Event, ModelVersion, Project, Store

from .api import ApiError, stop_of

MAP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
               "#aec7e8", "#ffbb78", "#98df8a")  # tab20's first; red is kept for disagreement
SUSPECTS_SHOWN = 50  # the page lists the most likely wrong; the API pages through all of them
bp = Blueprint("dashboard", __name__, url_prefix="/dashboard", template_folder="templates")
RECENT_EVENTS = 25
MAX_FALSE = 50


def _store() -> Store:
    return current_app.extensions["prelabel.store"]


@bp.before_request
def _auth() -> None:
    settings = current_app.extensions["prelabel.settings"]
    token = settings.api_token
    if not token:
        return
    auth = request.authorization
    given = (auth.password or "") if auth is not None and auth.type == "basic" else ""
    # the admin token grants what the API token grants
    ok = [hmac.compare_digest(given.encode(), t.encode()) for t in (token, settings.admin_token) if t]
    if not any(ok):
        raise ApiError(401, "the dashboard needs HTTP Basic credentials: any user name, API_TOKEN (or ADMIN_TOKEN) "
                            "as password",
                       {"WWW-Authenticate": 'Basic realm="prelabel dashboard"'})


@bp.get("")
@bp.get("/")
def index() -> Any:
    return render_template("index.html", projects=_store().list_projects(), workers=_workers())


def _workers() -> list[dict[str, Any]]:
    """Worker processes seen in the last day (their heartbeats), newest first."""
    return _store().workers(3 * current_app.extensions["prelabel.settings"].worker_heartbeat_s)


def _queue(s: Any, project_id: int) -> dict[str, Any]:
    states = dict(s.execute(select(Event.state, func.count()).where(Event.project_id == project_id)
                            .group_by(Event.state)).all())
    recent = s.scalars(select(Event).where(Event.project_id == project_id).order_by(Event.id.desc())
                       .limit(RECENT_EVENTS)).all()
    return {"pending": states.get("queued", 0), "running": states.get("processing", 0),
            "failed": states.get("failed", 0), "done": states.get("done", 0),
            "recent": [e.to_dict() for e in recent]}


def _false_predictions(s: Any, project_id: int, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The version's wrong out-of-fold predictions (validation set for versions trained before cross-fitting),
    with the documents' texts."""
    wrong = (metrics or {}).get("false_predictions") or []
    keys = [w["id"] for w in wrong[:MAX_FALSE]]
    texts: dict[str, str] = {}
    if keys:
        for pid_, h, text in s.execute(select(Document.platform_id, Document.text_hash, Document.text).where(
                Document.project_id == project_id,
                (Document.platform_id.in_(keys)) | (Document.text_hash.in_(keys)))):
            texts[pid_ or h] = text
            texts[h] = text
    return [{**w, "text": texts.get(w["id"], "")} for w in wrong[:MAX_FALSE]]


@bp.get("/projects/<int:project_id>")
def project(project_id: int) -> Any:
    from . import plots  # noqa: PLC0415 - matplotlib loads on the first page view, not at start-up

    settings = current_app.extensions["prelabel.settings"]
    summary = _store().project_summary(project_id)
    if summary is None:
        raise ApiError(404, f"no project {project_id}")
    key = settings.primary_metric
    with _store().session() as s:
        versions = s.scalars(select(ModelVersion).where(ModelVersion.project_id == project_id)
                             .order_by(ModelVersion.version)).all()
        p = s.get(Project, project_id)
        wanted = request.args.get("version", type=int)
        chosen = next((v for v in versions if v.version == wanted), None) if wanted is not None else (
            s.get(ModelVersion, p.champion_id) if p.champion_id else (versions[-1] if versions else None))
        if wanted is not None and chosen is None:
            raise ApiError(404, f"project {project_id} has no version {wanted}")
        points = [{"version": v.version, "n_train": v.n_train, "status": v.status,
                   "score": (v.metrics or {}).get(key)} for v in versions]
        every = [{**v.to_dict(), "score": (v.metrics or {}).get(key),
                  "test_score": (v.test_metrics or {}).get(key)} for v in reversed(versions)]
        rows = [v for v in every if v["status"] != "rejected"]  # the champion first, then former ones
        rows.sort(key=lambda v: (v["status"] != "champion", -v["version"]))
        rejected = [v for v in every if v["status"] == "rejected"]  # folded away on the page
        trained = [v for v in every if v["status"] in ("champion", "retired", "rejected", "candidate")]
        champion = next((v for v in versions if v.id == p.champion_id), None)
        overview = {
            "estimate": ((champion.metrics or {}).get("estimate") if champion else None) or None,
            "cv": (champion.metrics or {}).get(key) if champion else None,
            "promoted": sum(v["status"] in ("champion", "retired") for v in trained), "trained": len(trained),
        }
        detail = None
        if chosen is not None:
            metrics = chosen.metrics or {}
            cm = metrics.get("confusion_matrix") or {}
            multilabel = bool((chosen.classes or {}).get("multilabel"))
            detail = {
                "version": chosen.version, "family": chosen.family, "status": chosen.status,
                "reason": chosen.reason, "metrics": metrics, "test_metrics": chosen.test_metrics or {},
                "per_class": metrics.get("per_class") or {}, "multilabel": multilabel,
                "confusion": cm, "history": chosen.history or {},
                "loss_svg": plots.loss_curves(chosen.history, chosen.version) if (chosen.history or {}).get(
                    "loss") else None,
                "confusion_svg": plots.confusion(cm["labels"], cm["matrix"], chosen.version) if (
                    cm.get("matrix") and not multilabel) else None,
                "false": _false_predictions(s, project_id, metrics),
                "n_false": len(metrics.get("false_predictions") or []),
            }
        queue = _queue(s, project_id)
    workers = _workers()
    stop = stop_of(summary)
    reviewed = summary["prelabels_reviewed"]
    overview["accepted"] = reviewed["accepted"]
    overview["reviewed"] = reviewed["accepted"] + reviewed["changed"]
    corpus_map = _map_view(_store().corpus_map(project_id), summary, settings)
    n_suspects, suspects = _store().suspects(project_id, SUSPECTS_SHOWN)
    platform = platform_class(summary["platform"])
    for it in suspects:
        it["url"] = (platform.document_url(settings, summary["owner"], summary["name"], it["platform_id"])
                     if it["platform_id"] else None)
    return render_template("project.html", p=summary, key=key, rows=rows, rejected=rejected, overview=overview,
                           detail=detail, queue=queue, stop=stop, mode=settings.prelabel_mode,
                           suspects=suspects, n_suspects=n_suspects, corpus_map=corpus_map,
                           kinds=PICK_KINDS,
                           workers_alive=sum(w["alive"] for w in workers),
                           last_seen=max((w["last_seen"] for w in workers), default=None),
                           curve_svg=plots.learning_curve(points, key) if points else None)


def _map_view(stored: dict[str, Any] | None, summary: dict[str, Any], settings: Any) -> dict[str, Any] | None:
    """The stored map as the page draws it: each point with its place in the SVG, its colour classes (by person
    label ``L<i>``, by prediction ``P<i>``, agreement ``D0``/``D1``), its hover text and its platform link. Nothing
    is computed here but positions: the worker drew the map (worker/loop/mapping.py)."""
    if not stored or not stored["points"]:
        return None
    classes = sorted({str(v) for pt in stored["points"] for v in (pt[4], pt[5]) if v is not None})
    index = {c: i % len(MAP_COLOURS) for i, c in enumerate(classes)}
    platform = platform_class(summary["platform"])
    points = []
    for x, y, doc, pid, label, predicted, text in stored["points"]:
        css = [f"P{index[str(predicted)]}"]
        if label is not None:
            css += [f"L{index[str(label)]}", "D1" if str(label) != str(predicted) else "D0"]
        title = (f"{'label ' + str(label) if label is not None else 'not labelled'}; model: {predicted}\n{text}")
        points.append({"cx": round(10 + 980 * x, 1), "cy": round(10 + 580 * (1 - y), 1), "css": " ".join(css),
                       "title": title, "labelled": label is not None,
                       "url": platform.document_url(settings, summary["owner"], summary["name"], pid) if pid else None})
    return {**{k: v for k, v in stored.items() if k != "points"}, "points": points,
            "legend": [(c, MAP_COLOURS[index[c]], index[c]) for c in classes]}
