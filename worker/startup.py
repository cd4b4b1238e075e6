"""Run by the web process's gunicorn master as it starts (gunicorn.conf.py ``on_starting``): queue a reconcile of
every project that has documents, so the labels whose webhooks were lost while the web process was down are
recovered seconds after it is back (a platform such as Label Studio sends each webhook once).

    python -m worker.startup
"""
from __future__ import annotations

import logging
import sys


def main() -> int:
    from config import setup_logging  # noqa: PLC0415
    from worker import jobs  # noqa: PLC0415 - the queue and its task handles; no model code

    setup_logging(jobs.SETTINGS.log_level, jobs.SETTINGS.log_format)
    try:
        jobs.reconcile_known_projects("web start")
    except Exception:  # the web must start even when the queue cannot take the request: the periodic one will
        logging.getLogger("prelabel.startup").warning("start-up reconcile not queued", exc_info=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
