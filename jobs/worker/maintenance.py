"""The periodic work a `jobs` worker does between jobs: due jobs, schedules, relay, reaper, reconciler,
retention.

Each task runs at most once per its interval in each worker, and a Redis lock of its own lets one
worker at a time do it. A task that fails is logged in one line while Redis or the database is down,
so that an outage does not flood the log, and is tried again at its next turn.

A task that uses the database runs with bounded waits on row locks (``jobs.upkeep.locks``): a process
stopped inside a transaction holds its locks for as long as it is stopped, and this worker must not
wait as long. The bound ends with the task, before this worker runs a job on the same connection.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import DatabaseError, connections
from redis.exceptions import RedisError

from .. import intervals, keys
from ..conf import jobs_settings
from ..transport import connection
from ..transport.worker import StopRequested
from ..upkeep import due, locks, reaper, reconcile, relay, retention
from ..upkeep.schedules import SchedulingRole

logger = logging.getLogger("jobs")

#: Records pruned per rule in one pass of a worker; ``manage.py jobs_prune`` has no such bound.
PRUNE_LIMIT = 5000


@dataclass(frozen=True)
class Task:
    name: str
    interval: Callable[[], float]
    run: Callable[[], object]
    #: Whether the task opens database connections, which the worker closes after the pass (asked after
    #: the task ran, when it is a callable; such a task bounds its own lock waits).
    uses_database: bool | Callable[[], bool] = True


def _prune() -> None:
    redis = connection.get_connection(jobs_settings.DEFAULT_QUEUE)
    lock = redis.lock(keys.prune_lock(), timeout=600, blocking=False)
    if lock.acquire():
        try:
            retention.prune(limit=PRUNE_LIMIT)
        finally:
            lock.release()


TASKS = (
    # The reaper first: it must see a dead worker's expired entries before RQ's own registry cleanup.
    Task("reaper", intervals.reap_interval, reaper.reap),
    Task("relay", lambda: jobs_settings.RELAY_INTERVAL, relay.relay),
    Task("reconciler", lambda: jobs_settings.RECONCILE_INTERVAL, reconcile.reconcile),
    Task("retention", lambda: jobs_settings.PRUNE_INTERVAL, _prune),
)


def _close_connections() -> None:
    try:
        connections.close_all()
    except DatabaseError as exc:
        logger.warning("Database connections could not be closed: %s", exc)


class Maintenance:
    """When each task last ran in this worker, and running those that are due.

    The due-jobs task moves the due jobs of the worker's own queues; the schedules task fires due
    ticks while this worker holds the scheduling role; the others are the same in every worker.
    """

    def __init__(self, queue_names: Sequence[str] = (), worker_name: str = "") -> None:
        names = tuple(queue_names)
        self.scheduling = SchedulingRole(worker_name or uuid.uuid4().hex)
        self.tasks: tuple[Task, ...] = (
            Task("due jobs", lambda: jobs_settings.DUE_INTERVAL, lambda: due.enqueue_due(names), False),
            Task(
                "schedules",
                lambda: jobs_settings.DUE_INTERVAL,
                self.scheduling.fire,
                lambda: self.scheduling.held,
            ),
            *TASKS,
        )
        self._ran_at = {task.name: float("-inf") for task in self.tasks}
        self._failing: set[str] = set()

    def next_due_in(self) -> float:
        now = time.monotonic()
        return min(self._ran_at[task.name] + task.interval() - now for task in self.tasks)

    def due(self) -> bool:
        return self.next_due_in() <= 0

    def run(self) -> None:
        used_database = False
        try:
            for task in self.tasks:
                if time.monotonic() - self._ran_at[task.name] >= task.interval():
                    self._ran_at[task.name] = time.monotonic()
                    uses = task.uses_database
                    used_database = used_database or uses is True
                    self._run(task)
                    used_database = used_database or (callable(uses) and uses())
        finally:
            if used_database:
                _close_connections()

    def _run(self, task: Task) -> None:
        try:
            with locks.bounded_lock_waits() if task.uses_database is True else contextlib.nullcontext():
                task.run()
        except StopRequested:
            raise
        except (RedisError, DatabaseError) as exc:
            if task.name not in self._failing:
                logger.warning(
                    "The %s could not run (%s: %s); it will try again", task.name, type(exc).__name__, exc
                )
            self._failing.add(task.name)
            return
        except Exception:
            logger.exception("The %s failed; it will run again in %ss", task.name, task.interval())
            return
        if task.name in self._failing:
            logger.info("The %s runs again", task.name)
            self._failing.discard(task.name)

    def stop(self) -> None:
        """Give up the scheduling role, so that another worker takes it at its next pass."""
        self.scheduling.release()
