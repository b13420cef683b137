"""Pausing a queue: its jobs stay queued and `jobs` workers stop taking from it until it is resumed.

A paused queue is one Redis key (``keys.paused_queue``) on the queue's own Redis. Workers read the
paused set at most once a second (``jobs.worker.pause``), never once per job.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.utils import timezone
from redis import Redis

from . import keys
from .exceptions import InvalidJobDefinition
from .transport import connection


def _check(queue: str) -> None:
    if queue not in settings.RQ_QUEUES:
        raise InvalidJobDefinition(
            f"{queue!r} is not a queue of RQ_QUEUES (known: {', '.join(sorted(settings.RQ_QUEUES))})"
        )


def pause(queue: str) -> bool:
    """Pause ``queue``; False if it was paused already."""
    _check(queue)
    return bool(
        connection.get_connection(queue).set(keys.paused_queue(queue), timezone.now().isoformat(), nx=True)
    )


def resume(queue: str) -> bool:
    """Resume ``queue``; False if it was not paused."""
    _check(queue)
    return bool(connection.get_connection(queue).delete(keys.paused_queue(queue)))


def paused(queues: Iterable[str]) -> set[str]:
    """Which of ``queues`` are paused: one round trip per Redis server."""
    by_connection: dict[int, tuple[Redis, list[str]]] = {}
    for name in queues:
        redis = connection.get_connection(name)
        by_connection.setdefault(id(redis), (redis, []))[1].append(name)
    found: set[str] = set()
    for redis, names in by_connection.values():
        values = redis.mget([keys.paused_queue(name) for name in names])
        found.update(name for name, value in zip(names, values, strict=True) if value is not None)
    return found
