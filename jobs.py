"""The worker's entry point under its old name: ``huey_consumer jobs.huey`` in existing deployments keeps working.

It is worker/jobs.py itself (the same module object), not a copy: see that module.
"""
import sys

from worker import jobs as _jobs

sys.modules[__name__] = _jobs
