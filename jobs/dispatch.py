"""Pushing job records to their RQ queues, or leaving them to the relay when Redis cannot take them."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import router
from django.utils import timezone
from redis.exceptions import RedisError

from .models import Job
from .options import JobOptions
from .transport.queues import push

logger = logging.getLogger("jobs")


def dispatch(records: Sequence[Job], options: JobOptions | None = None) -> bool:
    """Push records, or mark them undispatched so the relay pushes them later. Never raises."""
    if not records:
        return True
    try:
        push(records, options)
    except RedisError as exc:
        alias = records[0]._state.db or router.db_for_write(Job)
        now = timezone.now()
        Job.objects.using(alias).filter(pk__in=[r.pk for r in records]).waiting().update(
            undispatched_since=now
        )
        for record in records:
            record.undispatched_since = now
        logger.warning("Redis unreachable, %d job(s) left for the relay: %s", len(records), exc)
        return False
    return True
