"""The relay: pushing records whose push to Redis failed when their transaction committed."""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict

from django.conf import settings
from django.db import DatabaseError, router
from django.db.models import QuerySet
from redis.exceptions import RedisError

from .. import keys, transitions
from ..conf import jobs_settings
from ..models import Job
from ..transport import connection, queues
from . import locks

logger = logging.getLogger("jobs")


def lock_ttl() -> float:
    """Seconds a relay's lock lasts: two of its intervals. A worker killed during a pass leaves the lock
    behind, and holds the other workers' relays back for that long at most. A pass takes milliseconds;
    two at once, should one take longer, may push a record twice, which runs once."""
    return 2 * jobs_settings.RELAY_INTERVAL


def relay(limit: int = 500, using: str | None = None) -> int:
    """Push records whose dispatch failed at commit time; returns how many were pushed and marked
    dispatched (one that another process holds locked is pushed, and pushed again at a later pass).

    Each Redis server's records are pushed on their own, under a lock on that server that keeps two
    workers from pushing the same records at once: a server that is down holds back its own queues'
    records only. Raises the first Redis error when no server could take its records.
    """
    alias = using or router.db_for_write(Job)
    undispatched = Job.objects.using(alias).undispatched()
    known = list(settings.RQ_QUEUES)
    pending = list(undispatched.filter(queue__in=known).order_by("undispatched_since")[:limit])
    if len(pending) < limit:
        _warn_of_unknown_queues(undispatched.exclude(queue__in=known))
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


#: The queues this process has said are missing from ``RQ_QUEUES`` (``_warn_of_unknown_queues``).
_said: set[str] = set()


def _warn_of_unknown_queues(stranded: QuerySet[Job]) -> None:
    """Records of queues that ``RQ_QUEUES`` no longer names wait for them: said once per process and
    queue, so that an operator who removed or renamed a queue learns it."""
    unsaid = sorted(set(stranded.order_by().values_list("queue", flat=True).distinct()[:100]) - _said)
    if unsaid:
        _said.update(unsaid)
        logger.error(
            "Jobs of queue(s) %s wait in the database: RQ_QUEUES does not name them; configure them again "
            "(or cancel or delete the jobs in the admin)",
            ", ".join(unsaid),
        )


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
        marked = _mark_dispatched(pending)
    finally:
        with contextlib.suppress(RedisError):
            lock.release()
    if pending:
        logger.info("Relayed %d job(s) to Redis", len(pending))
    return marked


def _mark_dispatched(records: list[Job]) -> int:
    """Mark the pushed records dispatched; when another process holds one of them locked, one by one, so
    that the others are marked and the locked one is pushed again at a later pass (it runs once).
    Returns how many were not skipped: a caller that relays until nothing is left (``jobs_relay``)
    stops at the locked ones."""
    try:
        transitions.mark_dispatched(records)
        return len(records)
    except DatabaseError as exc:
        if not locks.is_lock_timeout(exc):
            raise
    marked = 0
    for record in records:
        with locks.skip_if_locked("Relay", f"job {record.pk}"):
            transitions.mark_dispatched([record])
            marked += 1
    return marked
