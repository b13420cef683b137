"""Firing schedules: one job per tick, whatever the number of workers and hosts.

Every worker's maintenance tries, every ``DUE_INTERVAL``, to hold the scheduling role: a Redis lease
(a lock whose token is the worker's name, renewed at each pass, expiring ``role_ttl()`` seconds after its
holder's last pass). The holder fires the ticks that have come; when it dies, another worker takes the
role within ``role_ttl()`` seconds and fires the ticks it missed.

Exactly once is the database's doing, not the lease's: a pass takes a schedule's ticks by moving its
``next_tick`` with an UPDATE conditional on the value it read, and each run's record is unique on
(schedule, tick). Two firers at once (a holder that was slow rather than dead, ``manage.py jobs_schedule
tick`` beside the workers) still make one job per tick; the lease only spares the database the others'
queries.

Ticks are fired late rather than lost: a tick up to ``SCHEDULE_GRACE`` seconds old when a pass finds it
gets its own run. Older ones (no worker ran) are missed: by default the schedule runs once for them
(recorded with the tick of the first one missed); with ``catch_up=False`` they are skipped, with a
warning.

RQ's own ``CronScheduler`` (rq 3 only) does not fit: it is a process of its own, reads cron expressions
in the host's local time, and keeps each job's next time in its memory, so that two of them enqueue
each tick twice and a tick due while none runs is lost; its jobs have no record in the ledger.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, IntegrityError, router, transaction
from django.utils import timezone
from redis.exceptions import LockError, RedisError
from redis.lock import Lock

from .. import keys, schedules, ticks
from ..conf import jobs_settings
from ..exceptions import JobsError
from ..models import Job, Schedule
from ..transport import connection
from . import locks

if TYPE_CHECKING:
    from ..decorator import JobFunction

logger = logging.getLogger("jobs")


def role_ttl() -> float:
    """Seconds the role outlives its holder's last pass."""
    return max(5.0, 3 * jobs_settings.DUE_INTERVAL)


@dataclass(frozen=True)
class Plan:
    """What one pass does with a due schedule."""

    fire: list[datetime]
    next_tick: datetime | None  # None: the schedule has ended, and is never due again
    #: Ticks missed and not fired, if any: from the first of them until this moment (the grace's start).
    skipped: tuple[datetime, datetime] | None = None


def plan(schedule: Schedule, now: datetime) -> Plan:
    """The ticks to fire now, from the schedule's ``next_tick`` (the first not fired) to ``now``."""
    start = schedule.next_tick
    assert start is not None

    def between(first: datetime, last: datetime) -> list[datetime]:
        return ticks.ticks_between(
            first, last, cron=schedule.cron, every=schedule.every, zone_name=schedule.timezone
        )

    grace_start = now - timedelta(seconds=jobs_settings.SCHEDULE_GRACE)
    following = schedule.first_tick_after(now)
    if start > grace_start:
        return Plan([start, *between(start, now)], following)
    on_time = between(grace_start, now)
    if schedule.catch_up:
        return Plan([start, *on_time], following)
    return Plan(on_time, following, (start, grace_start))


def fire_due(now: datetime | None = None, using: str | None = None) -> list[Job]:
    """Fire every due tick of every enabled schedule, once; returns the runs recorded by this call."""
    now = now or timezone.now()
    alias = using or router.db_for_write(Schedule)
    fired: list[Job] = []
    for schedule in Schedule.objects.using(alias).due(now):
        try:
            with locks.skip_if_locked("Schedules", f"schedule {schedule.name!r}"):
                fired.extend(fire(schedule, now))
        except DatabaseError:
            raise  # the database, not this schedule: the pass is tried again as a whole
        except Exception:
            # This schedule's own fault (its arguments no longer decode, say): the others fire.
            logger.exception("Schedule %r could not fire; the other schedules go on", schedule.name)
    return fired


def fire(schedule: Schedule, now: datetime) -> list[Job]:
    """Take the schedule's due ticks (if no one took them first) and record a run for each."""
    alias = schedule._state.db or router.db_for_write(Schedule)
    try:
        steps = plan(schedule, now)
    except JobsError as exc:
        # Only a cron expression or a zone that no longer reads (edited in the database) gets here.
        logger.error("Schedule %r has no next tick and is disabled: %s", schedule.name, exc)
        Schedule.objects.using(alias).filter(pk=schedule.pk).update(enabled=False)
        return []
    fired: list[Job] = []
    with transaction.atomic(using=alias):
        taken = (
            Schedule.objects.using(alias)
            .filter(pk=schedule.pk, enabled=True, next_tick=schedule.next_tick)
            .update(next_tick=steps.next_tick, last_tick=max(steps.fire, default=schedule.last_tick))
        )
        if not taken:
            return []
        job_function = _job_function(schedule, steps.fire) if steps.fire else None
        if job_function is not None:
            for tick in steps.fire:
                record = _record(schedule, job_function, tick)
                if record is not None:
                    fired.append(record)
    if steps.next_tick is None:
        logger.warning("Schedule %r fired its last tick: its cron has no tick after now", schedule.name)
    if steps.skipped:
        first, until = steps.skipped
        logger.warning(
            "Schedule %r skipped its ticks from %s until %s: no worker ran them (catch_up is off)",
            schedule.name,
            first.isoformat(),
            until.isoformat(),
        )
    return fired


def _job_function(schedule: Schedule, due: list[datetime]) -> JobFunction[Any, Any] | None:
    try:
        return schedule.job_function(known=True)
    except Exception as exc:  # not registered, or its module fails on import with any error
        logger.error(
            "Schedule %r could not run its ticks %s: %s",
            schedule.name,
            ", ".join(tick.isoformat() for tick in due),
            exc,
        )
        return None


def _record(schedule: Schedule, job_function: JobFunction[Any, Any], tick: datetime) -> Job | None:
    try:
        with transaction.atomic(using=schedule._state.db):
            return schedules.enqueue_run(schedule, job_function, tick)
    except IntegrityError:
        logger.info("Schedule %r: tick %s already has its run", schedule.name, tick.isoformat())
    except JobsError as exc:
        logger.error("Schedule %r could not record its run of %s: %s", schedule.name, tick.isoformat(), exc)
    return None


class SchedulingRole:
    """This worker's claim on the scheduling role, and its passes while it holds it."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        self._lock: Lock | None = None

    def hold(self) -> bool:
        """Renew the role if this worker holds it, else take it if it is free."""
        if self._lock is not None:
            try:
                self._lock.reacquire()
                return True
            except LockError:
                logger.info("Worker %s lost the scheduling role", self.holder)
                self._lock = None
        redis = connection.get_connection(jobs_settings.DEFAULT_QUEUE)
        lock = redis.lock(keys.scheduling_role(), timeout=role_ttl(), blocking=False, thread_local=False)
        if lock.acquire(token=self.holder):
            self._lock = lock
            return True
        return False

    def fire(self) -> list[Job]:
        """A maintenance pass: fire due ticks if this worker holds the role, with bounded lock waits."""
        if not self.hold():
            return []
        with locks.bounded_lock_waits():
            return fire_due()

    @property
    def held(self) -> bool:
        """Whether this worker held the role at its last pass (and so used the database)."""
        return self._lock is not None

    def release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(RedisError, LockError):
                self._lock.release()
            self._lock = None


def holder() -> str | None:
    """The name of the worker that holds the scheduling role, if one does."""
    value = connection.get_connection(jobs_settings.DEFAULT_QUEUE).get(keys.scheduling_role())
    return value.decode() if isinstance(value, bytes) else value
