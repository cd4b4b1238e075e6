"""Create the missing tables of the configured database (DATABASE_URL, or the SQLite file in INSTANCE_PATH).

    python -m storage

The gunicorn master runs this in a child process at start, so the master itself never imports SQLAlchemy and
the settings (it stays ~25 MB; the web workers fork from it).
"""
from __future__ import annotations

import logging
import sys

from config import Settings, setup_logging

from .store import Store


def main() -> None:
    try:
        settings = Settings.load()
    except ValueError as exc:  # a bad setting: one line naming it, no traceback (the gunicorn master stops)
        sys.exit(f"prelabel: {exc}")
    setup_logging(settings.log_level, settings.log_format)
    Store(settings.db_url).create_all()
    logging.getLogger(__name__).debug("schema ready")


if __name__ == "__main__":
    main()
