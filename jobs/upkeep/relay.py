"""The relay: pushing records whose push to Redis failed when their transaction committed."""

from __future__ import annotations

import contextlib
import logging

from django.db import router
from redis.exceptions import RedisError

from .. import keys, transitions
from ..models import Job
from ..transport import connection, queues

logger = logging.getLogger("jobs")


def relay(limit: int = 500, using: str | None = None) -> int:
    """Push records whose dispatch failed at commit time; returns how many were pushed.

    A Redis lock keeps two workers from pushing the same records at once.
    """
    alias = using or router.db_for_write(Job)
    pending = list(Job.objects.using(alias).undispatched().order_by("undispatched_since")[:limit])
    if not pending:
        return 0
    redis = connection.get_connection(pending[0].queue)
    lock = redis.lock(keys.relay_lock(), timeout=60, blocking=False)
    if not lock.acquire():
        return 0
    try:
        # Rows may have been pushed by another relay between the read and the lock.
        pending = list(Job.objects.using(alias).undispatched().filter(pk__in=[r.pk for r in pending]))
        # A record that ran before (retried from the admin, rescued by the reaper) may still have its old
        # RQ job in RQ's failed or started registry: it goes, so that RQ's tools show the new run only.
        ran_before = [record for record in pending if record.attempts]
        if ran_before:
            queues.delete(ran_before)
        queues.push(pending)
        transitions.mark_dispatched(pending)
    finally:
        with contextlib.suppress(RedisError):
            lock.release()
    logger.info("Relayed %d job(s) to Redis", len(pending))
    return len(pending)
