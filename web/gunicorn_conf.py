"""gunicorn settings for the web process and the ML backend (override any of them with GUNICORN_CMD_ARGS or
command-line options). Loaded as ``-c python:web.gunicorn_conf`` (``prelabel web``), so it works from any folder
once prelabel is installed; ``gunicorn.conf.py`` at the top of the clone is this module under its old name."""
import os
from typing import Any

from dotenv import find_dotenv, load_dotenv

load_dotenv(find_dotenv(usecwd=True))  # INSTANCE_PATH may come from ./.env (the folder it runs in)

bind = os.environ.get("BIND", "127.0.0.1:8000")  # all interfaces only when asked (the image sets BIND)
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = None  # every webhook is recorded in the database; access logs would double the disk writes


def on_starting(server: Any) -> None:
    """Create the database schema once, before the workers fork and race to do it, in a child process
    (``python -m storage``): the master never imports SQLAlchemy or the settings, and stays small. Prometheus
    counters of all the workers are summed on each scrape: their values live in files in a folder of this
    server's own (by its address; emptied here), named before the workers import the app. Then a reconcile of
    every project is queued (``python -m worker.startup``)."""
    import re
    import shutil
    import subprocess
    import sys

    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        address = re.sub(r"[^0-9A-Za-z]+", "-", str(server.cfg.bind[0])).strip("-")
        folder = os.path.join(os.environ.get("INSTANCE_PATH", "instance"), f"prometheus-{address}")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    subprocess.run([sys.executable, "-m", "storage"], check=True)  # a bad setting stops the start, with its message
    # labels whose webhooks were lost while this process was down: a reconcile of each project, queued now
    subprocess.run([sys.executable, "-m", "worker.startup"], check=False)


def post_fork(server: Any, worker: Any) -> None:
    """In each web worker, before it loads the app: Huey's storage module imports the Redis and PostgreSQL client
    libraries whenever they are installed (~15 MB per process); a worker whose queue and database use neither
    marks them absent (``import`` then raises ImportError, which Huey expects), so they are never loaded. The
    settings are read as the app will read them (config imports neither library)."""
    import sys

    from config import Settings

    for module in Settings.load().unused_client_libraries():
        sys.modules.setdefault(module, None)  # type: ignore[assignment]


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
