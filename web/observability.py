"""Prometheus metrics for the web process and the ML backend (logs: config.setup_logging).

Metrics (``GET /metrics``, Prometheus text format):

* counted in the web process as requests arrive: ``prelabel_webhooks_total{platform, outcome}``. Under gunicorn
  each worker process counts its own; ``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` so a scrape of any
  worker sums them all.
* read from the database at scrape time, so they are exact whichever process (web, workers on other machines)
  did the work: events by state, queue depth, training runs and their duration, champion scores, workers alive
  (their heartbeats) and the seconds since each worker was last seen, the share of each pool's predictions that
  changed in the latest round and whether the stopping signal is on (model/stopping.py), and
  ``prelabel_person_saves_overwritten_total{project, outcome}``: person saves an upload landed over (tagtog),
  ``restored`` when what the upload replaced was put back, ``flagged`` when nothing could be.
"""
from __future__ import annotations

import hmac
import logging
import os
from typing import Any, Iterator

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import func, select, text

from model.names import mode_of
from model.stopping import stop_signal
from storage import Event, ModelVersion, Project, Store, Suspect, Upload

from .api import ApiError

from config import setup_logging  # noqa: F401 - logging is shared by every process; kept here for callers


QUEUES = ("prelabel", "prelabel-bert")  # worker/jobs.py's two queues


class StoreCollector:
    """Prometheus collector whose figures come from the database at each scrape."""

    def __init__(self, store: Store, primary_metric: str = "f1_macro", worker_alive_s: float = 30.0,
                 stop: tuple[int, float, int] = (2, 0.98, 100)) -> None:
        self.store = store
        self.primary_metric = primary_metric
        self.worker_alive_s = worker_alive_s
        self.stop = stop  # STOP_ROUNDS, STOP_KAPPA, STOP_MIN_LABELS

    def describe(self) -> list[Any]:
        return []  # collected lazily: registering must not query the database

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415

        events = GaugeMetricFamily("prelabel_events", "Webhook events recorded, by project and state "
                                   "(queued, processing, done, failed)", labels=["project", "state"])
        processed = CounterMetricFamily("prelabel_events_processed", "Events the workers finished, by project "
                                        "and result", labels=["project", "result"])
        depth = GaugeMetricFamily("prelabel_queue_depth", "Events waiting or being processed", labels=["project"])
        runs = CounterMetricFamily("prelabel_trainings", "Model versions trained, by project, family and status",
                                   labels=["project", "family", "status"])
        seconds = CounterMetricFamily("prelabel_training_seconds", "Total training time of the versions, "
                                      "by project and family", labels=["project", "family"])
        last = GaugeMetricFamily("prelabel_last_training_seconds", "Training time of the latest version",
                                 labels=["project", "family"])
        score = GaugeMetricFamily("prelabel_champion_score", "The champion's scores on its validation and test "
                                  "sets", labels=["project", "version", "metric", "dataset"])
        labels = GaugeMetricFamily("prelabel_training", "1 while a retrain of the project runs", labels=["project"])
        alive = GaugeMetricFamily("prelabel_workers_alive", "Worker processes whose heartbeat is recent",
                                  labels=["queue"])
        since_seen = GaugeMetricFamily("prelabel_worker_seconds_since_seen", "Seconds since each worker's last heartbeat "
                                 "(workers seen in the last day)", labels=["worker", "queue"])
        changed = GaugeMetricFamily("prelabel_stop_kappa", "Cohen's kappa between the latest two trained models' "
                                    "decisions on the stop set (1: the model no longer changes)", labels=["project"])
        stop = GaugeMetricFamily("prelabel_stop_suggested", "1 when kappa stayed at or above STOP_KAPPA for the last "
                                 "STOP_ROUNDS rounds with STOP_MIN_LABELS labels (more labels unlikely to help)",
                                 labels=["project"])
        overwritten = CounterMetricFamily(
            "prelabel_person_saves_overwritten", "Person saves an upload of prelabel landed over (tagtog has no "
            "conditional write), by project and whether what the upload replaced was put back",
            labels=["project", "outcome"])
        reviewed = CounterMetricFamily(
            "prelabel_prelabels_reviewed", "Pre-labels people labelled, by project, kind of pick (learn, review, "
            "audit, cold_start: PRELABEL_MODE) and whether they kept the suggestion as it was", labels=[
                "project", "mode", "outcome"])
        acceptance = GaugeMetricFamily("prelabel_acceptance_ratio", "Share of the labelled pre-labels people kept as "
                                       "they were, by project and kind of pick", labels=["project", "mode"])
        suspects = GaugeMetricFamily("prelabel_suspect_labels", "Person labels the round's out-of-fold model "
                                     "confidently disagrees with (likely wrong; not dismissed)", labels=["project"])
        workers = self.store.workers(self.worker_alive_s)
        for w in workers:
            for q in w["queues"]:
                since_seen.add_metric([w["id"], q], w["seconds_since_seen"])
        for q in QUEUES:
            alive.add_metric([q], sum(w["alive"] and q in w["queues"] for w in workers))
        with self.store.session() as s:
            projects = {p.id: p for p in s.scalars(select(Project))}
            slug = {pid: p.slug for pid, p in projects.items()}
            for pid, state, n in s.execute(select(Event.project_id, Event.state, func.count())
                                           .group_by(Event.project_id, Event.state)):
                name = slug.get(pid, str(pid))
                events.add_metric([name, state], n)
                if state in ("done", "failed"):
                    processed.add_metric([name, state], n)
            waiting: dict[int, int] = {}
            for pid, n in s.execute(select(Event.project_id, func.count()).where(
                    Event.state.in_(("queued", "processing"))).group_by(Event.project_id)):
                waiting[pid] = n
            totals: dict[tuple[str, str], float] = {}
            for pid, fam, status, n, total in s.execute(
                    select(ModelVersion.project_id, ModelVersion.family, ModelVersion.status, func.count(),
                           func.sum(ModelVersion.train_seconds))
                    .group_by(ModelVersion.project_id, ModelVersion.family, ModelVersion.status)):
                name = slug.get(pid, str(pid))
                runs.add_metric([name, fam, status], n)
                totals[(name, fam)] = totals.get((name, fam), 0.0) + float(total or 0.0)
            latest = s.execute(select(ModelVersion.project_id, ModelVersion.family, ModelVersion.train_seconds)
                               .order_by(ModelVersion.id.desc())).all()
            seen: set[tuple[int, str]] = set()
            for pid, fam, secs in latest:
                if (pid, fam) not in seen:
                    seen.add((pid, fam))
                    last.add_metric([slug.get(pid, str(pid)), fam], float(secs or 0.0))
            for pid, outcome, n in s.execute(select(Upload.project_id, Upload.overwrote, func.count())
                                             .where(Upload.overwrote.is_not(None))
                                             .group_by(Upload.project_id, Upload.overwrote)):
                overwritten.add_metric([slug.get(pid, str(pid)), outcome], n)  # restored | flagged
            kept: dict[tuple[str, str], list[int]] = {}
            for pid, strategy, accepted, n in s.execute(
                    select(Upload.project_id, Upload.strategy, Upload.accepted, func.count())
                    .where(Upload.accepted.is_not(None)).group_by(Upload.project_id, Upload.strategy, Upload.accepted)):
                cell = kept.setdefault((slug.get(pid, str(pid)), mode_of(strategy)), [0, 0])
                cell[0 if accepted else 1] += n
            for (name, mode), (yes, no) in kept.items():
                reviewed.add_metric([name, mode, "accepted"], yes)
                reviewed.add_metric([name, mode, "changed"], no)
                acceptance.add_metric([name, mode], yes / (yes + no))
            flagged = dict(s.execute(select(Suspect.project_id, func.count()).where(Suspect.dismissed_at.is_(None))
                                     .group_by(Suspect.project_id)).all())
            for pid, p in projects.items():
                suspects.add_metric([p.slug], flagged.get(pid, 0))
                history = (p.schedule or {}).get("stability") or []
                if history and history[-1].get("kappa") is not None:
                    changed.add_metric([p.slug], float(history[-1]["kappa"]))
                stop.add_metric([p.slug], 1.0 if stop_signal(history, *self.stop)["suggested"] else 0.0)
                depth.add_metric([p.slug], waiting.get(pid, 0))
                labels.add_metric([p.slug], 1 if p.training_since else 0)
                if p.champion_id:
                    mv = s.get(ModelVersion, p.champion_id)
                    for dataset, metrics in (((mv.metrics or {}).get("dataset", "validation"), mv.metrics or {}),
                                             ("test", mv.test_metrics or {})):
                        for key in ("f1", "f1_macro", "f1_micro", "f1_weighted", "accuracy", "mcc"):
                            if isinstance(metrics.get(key), (int, float)):
                                score.add_metric([p.slug, str(mv.version), key, dataset], float(metrics[key]))
        for (name, fam), total in totals.items():
            seconds.add_metric([name, fam], total)
        yield from (events, processed, depth, runs, seconds, last, score, labels, alive, since_seen, changed, stop,
                    overwritten, reviewed, acceptance, suspects)


class Metrics:
    """The web process's metrics: the webhook counter and the database collector, in one registry."""

    def __init__(self, store: Store, primary_metric: str = "f1_macro", worker_alive_s: float = 30.0,
                 stop: tuple[int, float, int] = (2, 0.98, 100)) -> None:
        from prometheus_client import CollectorRegistry, Counter  # noqa: PLC0415

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=False)
        # in multiprocess mode the counter's values live in files shared by the gunicorn workers
        self.webhooks = Counter("prelabel_webhooks", "Webhooks received, by platform and outcome",
                                ["platform", "outcome"], registry=None if self.multiprocess else self.registry)
        self.store_collector = StoreCollector(store, primary_metric, worker_alive_s, stop)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest  # noqa: PLC0415

        registry = self.registry
        if self.multiprocess:
            from prometheus_client import multiprocess  # noqa: PLC0415

            registry = CollectorRegistry(auto_describe=False)
            multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
        store_registry = CollectorRegistry(auto_describe=False)
        store_registry.register(self.store_collector)
        return body + generate_latest(store_registry), CONTENT_TYPE_LATEST


logger = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/metrics")
def metrics() -> Any:
    """Prometheus text format (this module's docstring says what each metric means)."""
    token = current_app.extensions["prelabel.settings"].metrics_token
    if token:
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {token}".encode()):
            raise ApiError(401, "metrics need Authorization: Bearer <METRICS_TOKEN>")
    body, content_type = current_app.extensions["prelabel.metrics"].render()
    return body, 200, {"Content-Type": content_type}


@bp.get("/healthz")
def healthz() -> Any:
    try:
        with current_app.extensions["prelabel.store"].engine.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception:
        logger.exception("health check: database unreachable")
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok", workers=worker_health()), 200


def worker_health() -> dict[str, Any]:
    """Workers alive (heartbeat within 3 WORKER_HEARTBEAT_S) per queue, and the latest heartbeat. The web
    process stays healthy without a worker (events wait in the queue), so this informs and does not fail."""
    settings = current_app.extensions["prelabel.settings"]
    workers = current_app.extensions["prelabel.store"].workers(3 * settings.worker_heartbeat_s)
    live = [w for w in workers if w["alive"]]
    return {"alive": len(live), "queues": {q: sum(q in w["queues"] for w in live) for q in QUEUES},
            "last_seen": max((w["last_seen"] for w in workers), default=None),
            "ready_after_s": live[0]["ready_after_s"] if live else None}
