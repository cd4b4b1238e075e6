"""The worker process: the queue's tasks (``worker.jobs``) and the loop they run (``worker.loop``).

    huey_consumer worker.jobs.huey -w 1
"""
