"""gunicorn settings under their old name (``gunicorn -c gunicorn.conf.py``): web/gunicorn_conf.py itself."""
from web.gunicorn_conf import *  # noqa: F403 - gunicorn reads this module's names: the settings and hooks
