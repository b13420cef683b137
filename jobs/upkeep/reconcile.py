"""Finding waiting records that Redis no longer holds (FLUSHALL, a failover to an empty replica) and
pushing them again.

A record waits (queued, scheduled, retrying) while RQ holds a job of the same id that is queued,
scheduled, deferred or started. When that job is gone, or RQ has ended it while the record still waits
(a worker lost its database before it could claim the record, say), nobody will ever run the record: it
is pushed again and the reason logged. Records still waiting for the relay, and records younger than
``RELAY_GRACE``, are left alone. Started records that Redis lost are the reaper's (``jobs.upkeep.reaper``).

A job released by the end of its last dependency counts as enqueued when it was released
(``released_at``): one whose releasing worker died before the push is pushed here, like any record
whose process died between its commit and its push.

Each pass also catches up on workflows (``jobs.upkeep.workflows``).

A waiting record whose RQ job still sits in RQ's scheduled registry well past its time (no worker's
due-jobs task reached its queue) is moved to its queue with the due jobs of that queue.

A job a worker left in RQ's intermediate list, or in its own hand-off list, when it died is the reaper's
(``jobs.upkeep.reaper``). One that a worker of several queues popped (RQ's ``BLPOP``) and died with
before it took it is in no list at all, while RQ's job still says queued: it is pushed again here once
two passes found it so (``queues.unaccounted``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import router
from django.utils import timezone
from redis.exceptions import RedisError

from .. import intervals, keys
from ..conf import jobs_settings
from ..models import Job
from ..transport import connection, queues
from . import due, rescue, workflows
from .reaper import Sightings

logger = logging.getLogger("jobs")

BATCH = 500


def lock_ttl() -> float:
    """Seconds the reconciler's lock lasts: one of its intervals. A worker killed during a pass leaves the
    lock behind, and holds the other workers' passes back for that long at most. Two passes at once,
    should one take longer, are safe: a job pushed twice runs once."""
    return jobs_settings.RECONCILE_INTERVAL


def reconcile(using: str | None = None) -> int:
    """One pass over the waiting records; returns how many were pushed again, plus the workflows'
    catch-up (ended jobs whose dependents were told, deferred jobs released)."""
    alias = using or router.db_for_write(Job)
    redis = connection.get_connection(jobs_settings.DEFAULT_QUEUE)
    lock = redis.lock(keys.reconcile_lock(), timeout=lock_ttl(), blocking=False)
    if not lock.acquire():
        return 0
    try:
        return _reconcile(alias)
    finally:
        with contextlib.suppress(RedisError):
            lock.release()


def _reconcile(alias: str) -> int:
    return workflows.catch_up(alias) + _rescue_lost(alias)


def _rescue_lost(alias: str) -> int:
    cutoff = timezone.now() - timedelta(seconds=jobs_settings.RELAY_GRACE)
    waiting = (
        Job.objects.using(alias)
        .waiting()
        .filter(undispatched_since__isnull=True, enqueued_at__lt=cutoff, queue__in=list(settings.RQ_QUEUES))
        .exclude(released_at__gte=cutoff)
        .order_by("pk")
    )
    redis = connection.get_connection(jobs_settings.DEFAULT_QUEUE)
    popped = Sightings(redis, keys.reconcile_popped(), time.time())
    pushed = 0
    last = None
    while True:
        page = waiting if last is None else waiting.filter(pk__gt=last)
        batch = list(page.values_list("pk", "queue")[:BATCH])
        if not batch:
            break
        last = batch[-1][0]
        late = queues.overdue(batch, cutoff)
        if late:
            logger.warning(
                "%d waiting job(s) overdue in RQ's scheduled registry: moving them to their queues: %s",
                len(late),
                ", ".join(str(pk) for pk, _ in late[:20]),
            )
            due.enqueue_due({queue_name for _, queue_name in late})
        lost, nowhere = queues.unaccounted(batch)
        if lost:
            why = "unknown to Redis (its data was lost, or their run ended before the record was claimed)"
            pushed += rescue.push_again(rescue.still_waiting(alias, lost), why)
        # Found so on two passes at least two heartbeats apart: a live worker takes a job it popped within
        # moments.
        gone = [pk for pk in nowhere if popped.for_at_least(str(pk), 2 * intervals.beat_interval())]
        if gone:
            why = "popped from their queue by a worker that died before it took them"
            pushed += rescue.push_again(rescue.still_waiting(alias, gone), why)
    popped.save()
    return pushed
