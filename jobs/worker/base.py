"""RQ worker classes for ``manage.py rqworker``: JSON only, Django's connections handled, the relay run.

Set ``RQ = {"WORKER_CLASS": "jobs.worker.Worker"}`` (forking) or ``"jobs.worker.SimpleWorker"``
(no fork; faster, one job's crash takes the worker down) and start ``manage.py rqworker``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import intervals
from ..conf import jobs_settings
from ..transport.runner import call_of
from ..transport.worker import Queue, RQForkingWorker, RQJob, RQSimpleWorker, WorkerMixin
from ..upkeep import reaper
from . import execution, ratelimit
from .liveness import Heartbeat
from .maintenance import Maintenance
from .pause import CHECK_INTERVAL, PausedQueues

logger = logging.getLogger("jobs")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


class LedgerWorkerMixin(WorkerMixin):
    """What every `jobs` worker adds to RQ's: a JSON serializer it cannot be talked out of, no database
    connection carried across a fork, its running job kept live for the reaper (``jobs.worker.liveness``),
    periodic maintenance (``jobs.worker.maintenance``), paused queues and rate limits respected, and a Redis
    outage waited out rather than ending the worker."""

    #: What the ``jobs.W003`` system check looks for on ``RQ["WORKER_CLASS"]``.
    records_in_ledger = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._maintenance = Maintenance()
        self._heartbeat: Heartbeat | None = None
        self._paused = PausedQueues([queue.name for queue in self.queues])

    # Overrides RQ's; checked against rq 2.12.
    @property
    def dequeue_timeout(self) -> int:
        # Wake up while idle often enough for the relay and the reaper.
        wake = min(jobs_settings.RELAY_INTERVAL, intervals.reap_interval())
        return max(1, min(super().dequeue_timeout, int(wake)))

    # Overrides RQ's; checked against rq 2.12.
    @property
    def should_run_maintenance_tasks(self) -> bool:
        return super().should_run_maintenance_tasks or self._maintenance.due()

    # Overrides RQ's; checked against rq 2.12.
    def run_maintenance_tasks(self) -> None:
        self._maintenance.run()
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()

    # A running job's liveness.

    # Overrides RQ's; checked against rq 2.12 and 3.0 (rq 3 passes the job's working time too).
    def get_heartbeat_ttl(self, job: RQJob, *args: Any, **kwargs: Any) -> int:
        return min(super().get_heartbeat_ttl(job, *args, **kwargs), intervals.entry_ttl())

    # Overrides RQ's; checked against rq 2.12.
    def prepare_execution(self, job: RQJob) -> Any:
        execution = super().prepare_execution(job)
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self.connection)
        self._heartbeat.begin(self.running(job, execution))
        return execution

    # Overrides RQ's; checked against rq 2.12.
    def handle_execution_ended(self, job: RQJob, queue: Queue, heartbeat_ttl: int) -> None:
        # In a forking worker this runs in the work horse, which must not touch the parent's thread.
        if self._heartbeat is not None and not self.is_horse:
            self._heartbeat.end()
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    # Overrides RQ's; checked against rq 2.12.
    def execute_job(self, job: RQJob, queue: Queue) -> None:
        if self._held_back(job, queue):
            return
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as exc:
            logger.warning("Redis failed around job %s (%s); its record keeps its outcome", job.id, exc)
        finally:
            if self._heartbeat is not None:
                self._heartbeat.end()

    # Overrides RQ's; checked against rq 2.12.
    def teardown(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        try:
            super().teardown()
        except REDIS_DOWN as exc:
            logger.warning("Worker %s could not unregister from Redis: %s", self.name, exc)

    # Paused queues and rate limits.

    # Overrides RQ's; checked against rq 2.12.
    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        while True:
            try:
                paused = self._paused.current()
            except REDIS_DOWN:
                paused = set()  # RQ's dequeue below waits for Redis with backoff
            if len(paused) < len(self.queues):
                break
            if timeout is None:
                return None  # burst: every queue is paused, nothing to take
            self.procline("All queues paused")
            time.sleep(CHECK_INTERVAL)
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
        return self.dequeue_skipping(paused, timeout, max_idle_time)

    def _held_back(self, job: RQJob, queue: Queue) -> bool:
        """Put a dequeued job back when its queue was paused meanwhile or its rate limit is reached."""
        if queue.name in self._paused.current():
            self.put_back(job, queue)
            return True
        wait = ratelimit.wait_before(call_of(job), queue.connection)
        if wait:
            at = datetime.now(UTC) + timedelta(seconds=math.ceil(wait))
            self.run_at(job, queue, at)
            logger.info("Job %s is over its rate limit: it will run at %s", job.id, at)
            return True
        return False

    # Redis going away: the dequeue loop waits for it with backoff; nothing else ends the worker.

    # Overrides RQ's; checked against rq 2.12.
    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        with contextlib.suppress(*REDIS_DOWN):
            super().heartbeat(timeout)

    # Overrides RQ's; checked against rq 2.12.
    def check_for_suspension(self, burst: bool) -> None:
        with contextlib.suppress(*REDIS_DOWN):
            super().check_for_suspension(burst)

    # Overrides RQ's; checked against rq 2.12.
    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            return super().set_state(state, pipeline)
        try:
            super().set_state(state)
        except REDIS_DOWN:
            self.keep_state(state)


class Worker(LedgerWorkerMixin, RQForkingWorker):
    """The forking worker: each job runs in a fresh work horse."""

    # Overrides RQ's; checked against rq 2.12.
    def execute_job(self, job: RQJob, queue: Queue) -> None:
        execution.preload(call_of(job))
        # A database socket opened by the parent must never be shared with the horse.
        connections.close_all()
        super().execute_job(job, queue)

    def handle_work_horse_killed(self, job: RQJob, retpid: int, ret_val: int, rusage: Any) -> None:
        # Checked against rq 2.12: handle_work_horse_killed(job, retpid, ret_val, rusage).
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        reaper.horse_killed(call_of(job), ret_val, retrying=bool(job.should_retry))


class SimpleWorker(LedgerWorkerMixin, RQSimpleWorker):
    """The non-forking worker: jobs run in the worker process itself."""
