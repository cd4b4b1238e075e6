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


def on_starting(server: object) -> None:
    """Create the database schema once, in the master, before the workers fork and race to do it."""
    from dotenv import load_dotenv

    from config import Settings
    from storage import Store

    load_dotenv()
    Store(Settings.from_env().db_url).create_all()
