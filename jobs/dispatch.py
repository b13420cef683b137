"""Pushing job records to their RQ queues, or leaving them to the relay when Redis cannot take them."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.utils import timezone
from redis.exceptions import RedisError

from . import transitions
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
        transitions.mark_undispatched(records, timezone.now())
        logger.warning("Redis unreachable, %d job(s) left for the relay: %s", len(records), exc)
        return False
    return True
