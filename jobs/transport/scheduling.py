"""Moving due jobs (delays, ``at``, retry backoffs, rate-limited jobs) from RQ's scheduled registries to
their queues, in the calling process, with RQ's own code.

RQ moves them in a scheduler process of one worker, which holds a lock per queue. That process exits on
its first Redis error and is restarted, and a dead holder's lock taken over, only by RQ's maintenance
every ten minutes. Here the move is a call the worker's maintenance makes every second or so: whether a
scheduler process lives, or who holds its lock, no longer matters.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from . import connection


@functools.cache
def _mover(queue_names: tuple[str, ...]) -> RQScheduler:
    """An ``RQScheduler`` used in this process only: no process of its own, no lock.

    Checked against rq 2.12 and 3.0: ``prepare_registries(names)`` sets the registries that
    ``enqueue_scheduled_jobs()`` reads, whatever locks the object holds (none here). The object keeps
    one connection pool for its calls, which redis-py renews in a forked child.
    """
    mover = RQScheduler(
        queue_names, connection=connection.get_connection(queue_names[0]), serializer=JSONSerializer
    )
    mover.prepare_registries(queue_names)
    return mover


def enqueue_due(queue_names: Iterable[str]) -> None:
    """Move the jobs of these queues whose time has come from RQ's scheduled registries to the queues.

    RQ's ``enqueue_scheduled_jobs`` reads the due ids, then pushes them and removes them from the
    registry in one transaction: two movers at the same moment may push a job twice, which the
    ledger's claim lets run once. Raises ``RedisError`` when Redis cannot be reached.
    """
    by_server: dict[tuple, list[str]] = {}
    for name in sorted(set(queue_names)):
        by_server.setdefault(connection.server_of(name), []).append(name)
    for names in by_server.values():
        _mover(tuple(names)).enqueue_scheduled_jobs()


def reset() -> None:
    _mover.cache_clear()


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting in {"RQ_QUEUES", "RQ"}:
        reset()
