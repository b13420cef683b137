"""Pushing job records to their RQ queues, or leaving them to the relay when Redis cannot take them.

A Redis that is down refuses a connection at once, but one that hangs (stopped, swapping, a network
partition, a host that drops packets) costs every push its whole timeout. After a push times out,
pushes are therefore skipped for ``ENQUEUE_RETRY_AFTER`` seconds in this process: the records are left
to the relay at once, as when a push fails, and the request answers in the time of its database work.
A refused connection fails fast and does not open the breaker.

A record whose queue is no longer in ``RQ_QUEUES`` (the settings changed since it was written) is left
to the relay too, which pushes it once the queue is configured again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from django.utils import timezone
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import transitions
from .conf import jobs_settings
from .models import Job
from .options import JobOptions
from .transport.queues import push

logger = logging.getLogger("jobs")


class _Breaker:
    """When this process may try Redis again after a push timed out (``time.monotonic()``)."""

    retry_at = float("-inf")

    def open(self) -> None:
        self.retry_at = time.monotonic() + jobs_settings.ENQUEUE_RETRY_AFTER

    def is_open(self) -> bool:
        return time.monotonic() < self.retry_at

    def close(self) -> None:
        self.retry_at = float("-inf")


breaker = _Breaker()


def dispatch(records: Sequence[Job], options: JobOptions | None = None) -> bool:
    """Push records, or mark them undispatched so the relay pushes them later. Never raises."""
    if not records:
        return True
    if breaker.is_open():
        _leave_to_relay(records)
        return False
    try:
        unknown = push(records, options)
    except RedisTimeoutError as exc:
        breaker.open()
        _leave_to_relay(records)
        logger.warning(
            "Redis did not answer, %d job(s) left for the relay; pushes skipped for %ss: %s",
            len(records),
            jobs_settings.ENQUEUE_RETRY_AFTER,
            exc,
        )
        return False
    except RedisError as exc:
        _leave_to_relay(records)
        logger.warning("Redis unreachable, %d job(s) left for the relay: %s", len(records), exc)
        return False
    except Exception:
        _leave_to_relay(records)
        logger.exception("%d job(s) could not be pushed; left for the relay", len(records))
        return False
    if unknown:
        _leave_to_relay(unknown)
        logger.error(
            "%d job(s) of queue(s) %s, which RQ_QUEUES does not name, wait in the database until it does",
            len(unknown),
            ", ".join(sorted({record.queue for record in unknown})),
        )
        return False
    return True


def _leave_to_relay(records: Sequence[Job]) -> None:
    transitions.mark_undispatched(records, timezone.now())
