"""RQ worker classes for ``manage.py rqworker``: JSON only, Django's connections handled, the relay run.

Set ``RQ = {"WORKER_CLASS": "jobs.worker.Worker"}`` (forking) or ``"jobs.worker.SimpleWorker"``
(no fork; faster, one job's crash takes the worker down) and start ``manage.py rqworker``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import rq
from django.db import connections
from rq.serializers import JSONSerializer

from . import dispatch
from .conf import jobs_settings

logger = logging.getLogger("jobs")


class LedgerWorkerMixin:
    """What every `jobs` worker adds to RQ's: a JSON serializer it cannot be talked out of,
    no database connection carried across a fork, and the relay on a short interval."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["serializer"] = JSONSerializer
        super().__init__(*args, **kwargs)
        for queue in self.queues:
            queue.serializer = self.serializer
        self._relayed_at = 0.0

    @property
    def dequeue_timeout(self) -> int:
        # Wake up while idle often enough to run the relay.
        return max(1, min(super().dequeue_timeout, int(jobs_settings.RELAY_INTERVAL)))

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return super().should_run_maintenance_tasks or self._relay_due()

    def run_maintenance_tasks(self) -> None:
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()
        self.run_relay()

    def _relay_due(self) -> bool:
        return time.monotonic() - self._relayed_at >= jobs_settings.RELAY_INTERVAL

    def run_relay(self) -> None:
        self._relayed_at = time.monotonic()
        try:
            dispatch.relay()
        except Exception:
            logger.exception("The relay failed; it will run again in %ss", jobs_settings.RELAY_INTERVAL)
        finally:
            connections.close_all()


class Worker(LedgerWorkerMixin, rq.Worker):
    """The forking worker: each job runs in a fresh work horse."""

    def execute_job(self, job: rq.job.Job, queue: rq.Queue) -> None:
        # A database socket opened by the parent must never be shared with the horse.
        connections.close_all()
        super().execute_job(job, queue)


class SimpleWorker(LedgerWorkerMixin, rq.SimpleWorker):
    """The non-forking worker: jobs run in the worker process itself."""
