"""RQ worker classes for ``manage.py rqworker``: JSON only, Django's connections handled, the relay run.

Set ``RQ = {"WORKER_CLASS": "jobs.worker.Worker"}`` (forking) or ``"jobs.worker.SimpleWorker"``
(no fork; faster, one job's crash takes the worker down) and start ``manage.py rqworker``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db import DatabaseError, connections
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import intervals, schedules
from ..conf import jobs_settings
from ..exceptions import JobsError
from ..transport.connection import MisconfError, recognise_misconf
from ..transport.runner import call_of
from ..transport.worker import Queue, RQForkingWorker, RQJob, RQSimpleWorker, StopRequested, WorkerMixin
from ..upkeep import locks, reaper
from . import execution, ratelimit, refusal
from .liveness import Heartbeat
from .logs import keep_signal_handler_lines
from .maintenance import Maintenance
from .pause import CHECK_INTERVAL, PausedQueues

logger = logging.getLogger("jobs")


#: Redis unreachable, or refusing writes for now: full (``maxmemory`` with ``noeviction``), a replica since a
#: failover (``READONLY``), or unable to persist (``MISCONF``). The worker waits each of them out, as it
#: waits out a Redis that is gone; any other refusal (a script's error, ``WRONGTYPE``) is an error.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OutOfMemoryError, ReadOnlyError, MisconfError)
T = TypeVar("T")
#: Seconds after which a job held back by a database error (its rate key reads a model) is tried again.
HOLD_BACK_RETRY = 5


def wait_for_redis(connection: Any, max_wait: float) -> None:
    """A worker started while Redis is down waits for it, as it waits out an outage once running, so that
    the order in which a host starts its services does not matter (RQ's worker would end at its first
    command, naming itself to Redis). SIGTERM and SIGINT still end the wait at once."""
    delay, warned_at = 0.1, -math.inf
    while True:
        try:
            connection.ping()
            return
        except REDIS_DOWN as exc:
            if time.monotonic() - warned_at >= 60:
                logger.warning("Redis does not answer (%s); the worker waits for it", exc)
                warned_at = time.monotonic()
        time.sleep(delay)
        delay = min(delay * 2, max_wait)


class LedgerWorkerMixin(WorkerMixin):
    """What every `jobs` worker adds to RQ's: a JSON serializer it cannot be talked out of, no database
    connection carried across a fork, its running job kept live for the reaper (``jobs.worker.liveness``),
    periodic maintenance (``jobs.worker.maintenance``), paused queues and rate limits respected, and a Redis
    outage waited out rather than ending the worker, even one that began before the worker started."""

    #: What the ``jobs.W003`` system check looks for on ``RQ["WORKER_CLASS"]``.
    records_in_ledger = True
    #: RQ's dequeue loop waits for a lost Redis with a backoff doubling up to this (RQ's own: 60 s), so
    #: that the worker is back, and moving due jobs, within seconds of Redis (checked against rq 2.12
    #: and 3.0).
    max_connection_wait_time = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        recognise_misconf()  # before the first command: MISCONF refuses PING too
        if kwargs.get("connection") is not None and kwargs.get("prepare_for_work", True):
            wait_for_redis(kwargs["connection"], self.max_connection_wait_time)
        super().__init__(*args, **kwargs)
        keep_signal_handler_lines(self.log)
        keep_signal_handler_lines(logger)
        self._maintenance = Maintenance([queue.name for queue in self.queues], self.name)
        self._heartbeat = Heartbeat(self.connection)
        self._paused = PausedQueues([queue.name for queue in self.queues])

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    @property
    def dequeue_timeout(self) -> int:
        # Wake up while idle often enough for the due jobs, the relay and the reaper.
        wake = min(jobs_settings.DUE_INTERVAL, jobs_settings.RELAY_INTERVAL, intervals.reap_interval())
        return max(1, min(super().dequeue_timeout, int(wake)))

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def work(self, *args: Any, **kwargs: Any) -> bool:
        # RQ's scheduler process is not started: the due-jobs task of every worker's maintenance
        # (``jobs.upkeep.due``) moves due jobs, one worker at a time under a lock of its own, and
        # outlives Redis outages and dead workers, which RQ's process and its lock do not for ten
        # minutes. Both at once would also push some due jobs twice (run once, but taken twice).
        if kwargs.pop("with_scheduler", False):
            logger.info(
                "Worker %s: due jobs are moved by the workers' maintenance, not RQ's scheduler", self.name
            )
        self._sync_schedules()
        return super().work(*args, **kwargs)

    def _sync_schedules(self) -> None:
        """Write the schedules that code and settings declare to the table; a failure is logged. A row
        lock held by a stopped process (``upkeep.locks``) fails the sync rather than hold up the worker
        before it takes its first job: the next start, or ``manage.py jobs_schedule sync``, writes it."""
        try:
            with locks.bounded_lock_waits():
                schedules.sync()
        except DatabaseError as exc:
            logger.warning("Worker %s could not sync the schedules (database: %s)", self.name, exc)
        except JobsError:
            logger.exception("Worker %s could not sync the schedules", self.name)

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    @property
    def should_run_maintenance_tasks(self) -> bool:
        return super().should_run_maintenance_tasks or self._maintenance.due()

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def run_maintenance_tasks(self) -> None:
        self._maintenance.run()
        if super().should_run_maintenance_tasks:
            try:
                super().run_maintenance_tasks()
            except StopRequested:
                raise
            except REDIS_DOWN as exc:
                logger.warning("Worker %s: RQ's registry cleanup could not run: %s", self.name, exc)
            except Exception:
                logger.exception("Worker %s: RQ's registry cleanup failed", self.name)

    # A running job's liveness.

    # Overrides RQ's; checked against rq 2.12 and 3.0 (rq 3 passes the job's working time too).
    def get_heartbeat_ttl(self, job: RQJob, *args: Any, **kwargs: Any) -> int:
        return min(super().get_heartbeat_ttl(job, *args, **kwargs), intervals.entry_ttl())

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def prepare_execution(self, job: RQJob) -> Any:
        execution = super().prepare_execution(job)
        self._heartbeat.begin(self.running(job, execution))
        return execution

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def handle_execution_ended(self, job: RQJob, queue: Queue, heartbeat_ttl: int) -> None:
        # In a forking worker this runs in the work horse, which must not touch the parent's thread.
        if not self.is_horse:
            self._heartbeat.end()
        super().handle_execution_ended(job, queue, heartbeat_ttl)

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def execute_job(self, job: RQJob, queue: Queue) -> None:
        if self._held_back(job, queue):
            return
        try:
            super().execute_job(job, queue)
        except StopRequested:
            raise
        except REDIS_DOWN as exc:
            logger.warning("Redis failed around job %s (%s); its record keeps its outcome", job.id, exc)
            self._unless_claimed(job)
        except Exception:
            # What RQ runs around a job (its bookkeeping, the work horse's monitoring) must not end the
            # worker: the record keeps the run's outcome, the reaper and the reconciler the rest.
            logger.exception(
                "Worker %s: the run of job %s ended in an error; taking the next job", self.name, job.id
            )
        finally:
            self._heartbeat.end()

    def _unless_claimed(self, job: RQJob) -> None:
        """A record that Redis failed before its run claimed it is left to the relay: RQ may no longer
        hold its job in any list, while its status there still says queued."""
        try:
            call = call_of(job)
            if call is not None and refusal.leave_to_relay(call):
                logger.warning("Job %s did not start; its record is left to the relay", job.id)
        except DatabaseError as exc:
            logger.warning("Job %s: the database could not take it either (%s)", job.id, exc)

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def teardown(self) -> None:
        self.finish_running()
        self._heartbeat.stop()
        self._maintenance.stop()
        try:
            super().teardown()
        except REDIS_DOWN as exc:
            logger.warning("Worker %s could not unregister from Redis: %s", self.name, exc)
        except Exception:
            logger.exception("Worker %s could not unregister from Redis", self.name)

    def finish_running(self) -> None:
        """Wait for the jobs this worker runs besides its main loop (``ThreadedWorker``'s threads)."""

    # Paused queues and rate limits.

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        # RQ's loop waits out a ConnectionError; a TimeoutError (Redis hung, not down) or anything else
        # raised while dequeuing (a payload that does not load) would end the worker.
        return self.until_it_goes(lambda: self._dequeue(timeout, max_idle_time), "dequeuing")

    def until_it_goes(self, step: Callable[[], T], what: str) -> T:
        """``step()``, tried again with backoff (up to RQ's ``max_connection_wait_time``) while Redis does
        not answer or anything else goes wrong in it, logged: the worker goes on rather than end."""
        wait = 1.0
        while True:
            try:
                return step()
            except StopRequested:
                raise
            except REDIS_DOWN as exc:
                logger.warning(
                    "Worker %s: Redis did not answer (%s); retrying in %.0f s", self.name, exc, wait
                )
            except Exception:
                logger.exception("Worker %s: %s failed; retrying in %.0f s", self.name, what, wait)
            time.sleep(wait)
            wait = min(wait * 2, self.max_connection_wait_time)

    def _dequeue(self, timeout: int | None, max_idle_time: int | None) -> Any:
        while True:
            if self._stop_requested:  # asked while the worker held a job (``OneJobMixin``), and not seen yet
                raise StopRequested()
            paused = self._paused.current()
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
        """Whether a dequeued job is not to run now: its queue was paused meanwhile, its rate limit is
        reached, or it cannot start at all (its rate key raised; the record says why)."""
        try:
            call = call_of(job)
        except Exception as exc:  # an RQ job that names the runner with arguments it cannot take
            logger.error("Job %s cannot be read (%r); filed as failed in RQ", job.id, exc)
            self.file_failed(job, queue, f"{type(exc).__name__}: {exc}")
            return True
        try:
            return self._over_limit(job, queue, call)
        except StopRequested:
            raise
        except REDIS_DOWN as exc:
            self._after_redis_failed(job, queue, call, exc)
        except DatabaseError as exc:
            self._after_database_failed(job, queue, exc)
        except Exception as exc:
            self._fail_before_run(job, queue, call, exc)
        return True

    def _over_limit(self, job: RQJob, queue: Queue, call: Any) -> bool:
        if queue.name in self._paused.current():
            self.put_back(job, queue)
            return True
        wait = ratelimit.wait_before(call, queue.connection)
        if wait:
            at = datetime.now(UTC) + timedelta(seconds=math.ceil(wait))
            self.run_at(job, queue, at)
            logger.info("Job %s is over its rate limit: it will run at %s", job.id, at)
            return True
        return False

    def _fail_before_run(self, job: RQJob, queue: Queue, call: Any, exc: Exception) -> None:
        """The job's own fault (its rate key raised, its arguments no longer decode): it fails for good."""
        if isinstance(exc, ObjectDoesNotExist):
            logger.warning("Job %s refers to a row that no longer exists: %s", job.id, exc)
        try:
            if call is not None:
                refusal.fail_before_run(call, self.name, exc)
            self.file_failed(job, queue, "".join(traceback.format_exception(exc)))
        except StopRequested:
            raise
        except REDIS_DOWN as redis_exc:
            logger.warning("Job %s failed before it started; Redis could not file it: %s", job.id, redis_exc)
        except DatabaseError as db_exc:
            self._after_database_failed(job, queue, db_exc)

    def _after_database_failed(self, job: RQJob, queue: Queue, exc: DatabaseError) -> None:
        """A database blip before the job started: the job is tried again a few seconds later."""
        at = datetime.now(UTC) + timedelta(seconds=HOLD_BACK_RETRY)
        logger.warning("Job %s could not start (database: %s); it will be tried again at %s", job.id, exc, at)
        try:
            self.run_at(job, queue, at)
        except REDIS_DOWN as redis_exc:
            logger.warning("Job %s could not be put back (Redis: %s); the reconciler will", job.id, redis_exc)

    def _after_redis_failed(self, job: RQJob, queue: Queue, call: Any, exc: Exception) -> None:
        """A Redis blip before the job started: the relay pushes its record again once Redis answers."""
        logger.warning("Job %s could not start (Redis: %s); its record is left to the relay", job.id, exc)
        try:
            if call is not None:
                refusal.leave_to_relay(call)
        except DatabaseError as db_exc:
            logger.warning("Job %s: the database could not take it either (%s)", job.id, db_exc)
        with contextlib.suppress(*REDIS_DOWN):
            self.forget_taken(job, queue)

    # Redis going away: the dequeue loop waits for it with backoff; nothing else ends the worker.

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        with contextlib.suppress(*REDIS_DOWN):
            super().heartbeat(timeout)

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def check_for_suspension(self, burst: bool) -> None:
        with contextlib.suppress(*REDIS_DOWN):
            super().check_for_suspension(burst)

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            return super().set_state(state, pipeline)
        try:
            super().set_state(state)
        except REDIS_DOWN:
            self.keep_state(state)


class Worker(LedgerWorkerMixin, RQForkingWorker):
    """The forking worker: each job runs in a fresh work horse."""

    # Overrides RQ's; checked against rq 2.12 and 3.0.
    def execute_job(self, job: RQJob, queue: Queue) -> None:
        try:
            execution.preload(call_of(job))
        except Exception:
            # The work horse imports it again and records the failure on the job's record.
            logger.warning("Job %s: its function could not be preloaded", job.id, exc_info=True)
        # A database socket opened by the parent must never be shared with the horse.
        connections.close_all()
        super().execute_job(job, queue)

    def handle_work_horse_killed(self, job: RQJob, retpid: int, ret_val: int, rusage: Any) -> None:
        # Checked against rq 2.12 and 3.0: handle_work_horse_killed(job, retpid, ret_val, rusage).
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        try:
            reaper.horse_killed(call_of(job), ret_val, retrying=bool(job.should_retry), worker_name=self.name)
        except (DatabaseError, *REDIS_DOWN) as exc:
            # The record stays started (the database failed, or another process has held the record
            # locked past JOBS["ROW_LOCK_TIMEOUT"]): the reaper finds the job's entry gone and acts on it.
            logger.warning(
                "Job %s: its killed work horse could not be recorded (%s); left to the reaper", job.id, exc
            )


class SimpleWorker(LedgerWorkerMixin, RQSimpleWorker):
    """The non-forking worker: jobs run in the worker process itself."""
