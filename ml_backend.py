"""The ML backend's entry point under its old name: ``gunicorn "ml_backend:create_app()"`` in existing deployments
keeps working. It is web/ml_backend.py itself (the same module object): see that module."""
import sys

from web import ml_backend as _ml_backend

sys.modules[__name__] = _ml_backend
