"""gunicorn settings for the web process (override any of them with GUNICORN_CMD_ARGS)."""
import os

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = None  # every webhook is recorded in the database; access logs would double the disk writes
