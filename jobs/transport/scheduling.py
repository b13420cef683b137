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
from rq.utils import current_timestamp

from . import connection, priority

#: Seconds ahead of now that the ids about to be moved are read, so that none due by the time RQ's
#: mover reads its own list is missed: those still waiting afterwards are left alone.
_HORIZON = 2


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
    ledger's claim lets run once. RQ appends the ids it moves at the tail of their queue; each is then
    put in its place by priority (``transport.priority``). Raises ``RedisError`` when Redis cannot be
    reached.
    """
    by_server: dict[tuple, list[str]] = {}
    for name in sorted(set(queue_names)):
        by_server.setdefault(connection.server_of(name), []).append(name)
    for names in by_server.values():
        due = _due_soon(names)
        _mover(tuple(names)).enqueue_scheduled_jobs()
        if due:
            _place_moved(due)


def _due_soon(queue_names: list[str]) -> dict[str, list[str]]:
    """The ids in these queues' scheduled registries due within ``_HORIZON`` seconds, in one round trip."""
    redis = connection.get_connection(queue_names[0])
    with redis.pipeline(transaction=False) as pipe:
        for name in queue_names:
            registry = connection.get_queue(name).scheduled_job_registry
            pipe.zrangebyscore(registry.key, 0, current_timestamp() + _HORIZON, start=0, num=1000)
        found = pipe.execute()
    return {
        name: [job_id.decode() for job_id in ids] for name, ids in zip(queue_names, found, strict=True) if ids
    }


def _place_moved(due: dict[str, list[str]]) -> None:
    """Put in their place the ids among ``due`` that left their scheduled registry (RQ moved them)."""
    for name, ids in due.items():
        queue = connection.get_queue(name)
        registry = queue.scheduled_job_registry
        with queue.connection.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.zscore(registry.key, job_id)
            scores = pipe.execute()
        moved = [(job_id, None) for job_id, score in zip(ids, scores, strict=True) if score is None]
        priority.place(queue, moved)


def reset() -> None:
    _mover.cache_clear()


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting in {"RQ_QUEUES", "RQ"}:
        reset()
