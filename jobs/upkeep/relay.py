"""The relay: pushing records whose push to Redis failed when their transaction committed."""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict

from django.db import router
from redis.exceptions import RedisError

from .. import keys, transitions
from ..conf import jobs_settings
from ..models import Job
from ..transport import connection, queues

logger = logging.getLogger("jobs")


def lock_ttl() -> float:
    """Seconds a relay's lock lasts: two of its intervals. A worker killed during a pass leaves the lock
    behind, and holds the other workers' relays back for that long at most. A pass takes milliseconds;
    two at once, should one take longer, may push a record twice, which runs once."""
    return 2 * jobs_settings.RELAY_INTERVAL


def relay(limit: int = 500, using: str | None = None) -> int:
    """Push records whose dispatch failed at commit time; returns how many were pushed.

    Each Redis server's records are pushed on their own, under a lock on that server that keeps two
    workers from pushing the same records at once: a server that is down holds back its own queues'
    records only. Raises the first Redis error when no server could take its records.
    """
    alias = using or router.db_for_write(Job)
    pending = list(Job.objects.using(alias).undispatched().order_by("undispatched_since")[:limit])
    by_server: dict[tuple, list[Job]] = defaultdict(list)
    for record in pending:
        by_server[connection.server_of(record.queue)].append(record)
    pushed, errors = 0, []
    for records in by_server.values():
        try:
            pushed += _relay(alias, records)
        except RedisError as exc:
            errors.append(exc)
            logger.warning(
                "%d job(s) of queue(s) %s wait for their Redis: %s",
                len(records),
                ", ".join(sorted({record.queue for record in records})),
                exc,
            )
    if errors and not pushed:
        raise errors[0]
    return pushed


def _relay(alias: str, records: list[Job]) -> int:
    """Push the records of one Redis server, under its lock."""
    redis = connection.get_connection(records[0].queue)
    lock = redis.lock(keys.relay_lock(), timeout=lock_ttl(), blocking=False)
    if not lock.acquire():
        return 0
    try:
        # Rows may have been pushed by another relay between the read and the lock.
        pending = list(Job.objects.using(alias).undispatched().filter(pk__in=[r.pk for r in records]))
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
    if pending:
        logger.info("Relayed %d job(s) to Redis", len(pending))
    return len(pending)
