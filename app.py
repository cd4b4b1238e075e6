"""prelabel's web process: the application factory that wires web/ together.

    gunicorn -c gunicorn.conf.py "app:create_app()"

Webhooks (web/webhooks.py) are verified and parsed by their platform, recorded and enqueued: the answer is 202 in
milliseconds. The web process never calls a platform inside a request and never imports TensorFlow; the worker
(worker/jobs.py) does the work.
"""
from __future__ import annotations

from typing import Any, Mapping

from flask import Flask, redirect, url_for

from web import api, dashboard, observability, webhooks


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory: settings from the environment (.env loaded), then ``test_config`` overrides."""
    app, settings, store = api.new_app(__name__, test_config)
    app.extensions["prelabel.metrics"] = observability.Metrics(store, settings.primary_metric,
                                                                  3 * settings.worker_heartbeat_s,
                                                                  (settings.stop_rounds, settings.stop_kappa,
                                                                   settings.stop_min_labels))
    from worker import jobs  # noqa: PLC0415 - the queue only; jobs imports no model code at import time

    jobs.use_queue(settings)  # the queue beside this app's database, not the environment's
    app.extensions["prelabel.retrain"] = jobs.retrain
    app.extensions["prelabel.refresh"] = jobs.refresh_champion
    app.extensions["prelabel.cv"] = jobs.cross_validate
    app.extensions["prelabel.reconcile"] = jobs.reconcile
    api.harden(app, settings.max_body_bytes)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(observability.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(dashboard.bp)
    # the front door: people who open the server's address land on the dashboard (which asks for its token)
    app.add_url_rule("/", "front_door", lambda: redirect(url_for("dashboard.index"), code=302))
    return app
