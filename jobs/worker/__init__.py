"""What runs inside ``manage.py rqworker``: the worker classes, running and recording a job, liveness,
rate limits, paused queues and the maintenance tick.

Set ``RQ = {"WORKER_CLASS": "jobs.worker.LeanWorker"}`` (recommended), ``"jobs.worker.ThreadedWorker"``
(up to ``JOBS["WORKER_CONCURRENCY"]`` jobs at once, in threads), ``"jobs.worker.Worker"`` (forking) or
``"jobs.worker.SimpleWorker"``.
"""

from .base import LedgerWorkerMixin, SimpleWorker, Worker
from .lean import LeanWorker
from .threaded import ThreadedWorker

__all__ = ["LeanWorker", "LedgerWorkerMixin", "SimpleWorker", "ThreadedWorker", "Worker"]
