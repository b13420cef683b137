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
from typing import TYPE_CHECKING, Any

import rq
from django.db import connections
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.serializers import JSONSerializer

from .. import intervals
from ..conf import jobs_settings
from ..upkeep import reaper
from . import execution, liveness, ratelimit
from .liveness import Heartbeat
from .maintenance import Maintenance
from .pause import CHECK_INTERVAL, PausedQueues

logger = logging.getLogger("jobs")

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)

if TYPE_CHECKING:
    # The mixins extend RQ's worker: a type checker reads them as subclasses of it.
    _WorkerBase = rq.worker.BaseWorker
else:
    _WorkerBase = object


class LedgerWorkerMixin(_WorkerBase):
    """What every `jobs` worker adds to RQ's: a JSON serializer it cannot be talked out of, no database
    connection carried across a fork, its running job kept live for the reaper (``jobs.worker.liveness``),
    periodic maintenance (``jobs.worker.maintenance``), paused queues and rate limits respected, and a Redis
    outage waited out rather than ending the worker."""

    #: What the ``jobs.W003`` system check looks for on ``RQ["WORKER_CLASS"]``.
    records_in_ledger = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["serializer"] = JSONSerializer
        super().__init__(*args, **kwargs)
        for queue in self.queues:
            queue.serializer = self.serializer
        self._maintenance = Maintenance()
        self._heartbeat: Heartbeat | None = None
        self._paused = PausedQueues([queue.name for queue in self.queues])
        self._narrowed = False

    @property
    def dequeue_timeout(self) -> int:
        # Wake up while idle often enough for the relay and the reaper.
        wake = min(jobs_settings.RELAY_INTERVAL, intervals.reap_interval())
        return max(1, min(super().dequeue_timeout, int(wake)))

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return super().should_run_maintenance_tasks or self._maintenance.due()

    def run_maintenance_tasks(self) -> None:
        self._maintenance.run()
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()

    # A running job's liveness.

    def get_heartbeat_ttl(self, job: rq.job.Job) -> int:
        return min(super().get_heartbeat_ttl(job), intervals.entry_ttl())

    def prepare_execution(self, job: rq.job.Job) -> Any:
        execution = super().prepare_execution(job)
        if self._heartbeat is None:
            self._heartbeat = Heartbeat(self.connection)
        self._heartbeat.begin(
            liveness.Running(job.started_job_registry.key, execution.composite_key, execution.key, self.key)
        )
        return execution

    def handle_execution_ended(self, job: rq.job.Job, queue: rq.Queue, heartbeat_ttl: int) -> None:
        # In a forking worker this runs in the work horse, which must not touch the parent's thread.
        if self._heartbeat is not None and not self.is_horse:
            self._heartbeat.end()
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    def execute_job(self, job: rq.job.Job, queue: rq.Queue) -> None:
        if self._held_back(job, queue):
            return
        try:
            super().execute_job(job, queue)
            if self._narrowed:
                queue.intermediate_queue.remove(job.id)
        except REDIS_DOWN as exc:
            logger.warning("Redis failed around job %s (%s); its record keeps its outcome", job.id, exc)
        finally:
            if self._heartbeat is not None:
                self._heartbeat.end()

    def teardown(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        try:
            super().teardown()
        except REDIS_DOWN as exc:
            logger.warning("Worker %s could not unregister from Redis: %s", self.name, exc)

    # Paused queues and rate limits.

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
        if not paused:
            self._narrowed = False
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        everything = self._ordered_queues
        self._ordered_queues = [queue for queue in everything if queue.name not in paused]
        # RQ moves a job through the queue's intermediate list when it listens on one queue only.
        self._narrowed = len(self._ordered_queues) == 1 and len(self.queues) > 1
        try:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        finally:
            self._ordered_queues = everything

    def _held_back(self, job: rq.job.Job, queue: rq.Queue) -> bool:
        """Put a dequeued job back when its queue was paused meanwhile or its rate limit is reached."""
        if queue.name in self._paused.current():
            queue.push_job_id(job.id, at_front=True)
            queue.intermediate_queue.remove(job.id)
            return True
        wait = ratelimit.wait_before(job, queue.connection)
        if wait:
            at = datetime.now(UTC) + timedelta(seconds=math.ceil(wait))
            queue.schedule_job(job, at)
            queue.intermediate_queue.remove(job.id)
            logger.info("Job %s is over its rate limit: it will run at %s", job.id, at)
            return True
        return False

    # Redis going away: the dequeue loop waits for it with backoff; nothing else ends the worker.

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        with contextlib.suppress(*REDIS_DOWN):
            super().heartbeat(timeout)

    def check_for_suspension(self, burst: bool) -> None:
        with contextlib.suppress(*REDIS_DOWN):
            super().check_for_suspension(burst)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            return super().set_state(state, pipeline)
        try:
            super().set_state(state)
        except REDIS_DOWN:
            self._state = state


class Worker(LedgerWorkerMixin, rq.Worker):
    """The forking worker: each job runs in a fresh work horse."""

    def execute_job(self, job: rq.job.Job, queue: rq.Queue) -> None:
        execution.preload(job)
        # A database socket opened by the parent must never be shared with the horse.
        connections.close_all()
        super().execute_job(job, queue)

    def handle_work_horse_killed(self, job: rq.job.Job, retpid: int, ret_val: int, rusage: Any) -> None:
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        reaper.horse_killed(job, ret_val, self.name)


class SimpleWorker(LedgerWorkerMixin, rq.SimpleWorker):
    """The non-forking worker: jobs run in the worker process itself."""
