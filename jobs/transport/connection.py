"""Redis connections and RQ queues, resolved once per queue from django-rq's ``RQ_QUEUES``."""

from __future__ import annotations

import functools
from typing import Any

import django_rq
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis import Redis
from redis._parsers import BaseParser
from redis.exceptions import ResponseError
from rq import Queue
from rq.serializers import JSONSerializer

from ..conf import jobs_settings


class MisconfError(ResponseError):
    """Redis refuses writes, and PING, until it can persist again (``MISCONF``): its last RDB snapshot
    failed with ``stop-writes-on-bgsave-error yes``, or its AOF could not be written (a full disk, say)."""


def recognise_misconf() -> None:
    """Have redis-py raise ``MisconfError`` for a ``MISCONF`` reply in this process, where it raises a plain
    ``ResponseError``, as it raises ``OutOfMemoryError`` for ``OOM``: a class that ``except`` clauses can
    name, and that a pipeline keeps where it rewrites the message (``Command # 1 (...) of pipeline caused
    error: MISCONF ...``). redis-py has no public way to add one; its parsers (RESP2, RESP3, hiredis) all
    read this one table of error codes (checked against redis-py 5.0 and 8.2). Workers call it; code that
    catches ``ResponseError`` still catches it, and its message loses the code, as ``OOM``'s does."""
    BaseParser.EXCEPTION_CLASSES["MISCONF"] = MisconfError


def configured(queue_name: str) -> bool:
    """Whether ``RQ_QUEUES`` names the queue. A record's queue may have left the settings since the
    record was written: its jobs then wait in the database until the queue is configured again."""
    return queue_name in settings.RQ_QUEUES


@functools.cache
def get_connection(queue_name: str) -> Redis:
    """The Redis client for a queue; one pool per queue per process (redis-py resets it after fork).

    A Redis that accepts connections but does not answer must not hang a commit hook: where the
    queue's configuration sets no socket timeouts, the ``JOBS`` defaults apply.
    """
    return with_timeouts(django_rq.get_connection(queue_name))


def with_timeouts(client: Redis) -> Redis:
    """``client``, whose new connections time out as the ``JOBS`` defaults say where its configuration
    sets no socket timeouts."""
    pool_kwargs = client.connection_pool.connection_kwargs
    for name, default in (
        ("socket_connect_timeout", jobs_settings.REDIS_CONNECT_TIMEOUT),
        ("socket_timeout", jobs_settings.REDIS_SOCKET_TIMEOUT),
    ):
        if pool_kwargs.get(name) is None:
            pool_kwargs[name] = default
    return client


def server_of(queue_name: str) -> tuple:
    """What tells the Redis databases of two queues apart: the Sentinel service, or the address; and the db.

    Queues with equal values share one Redis database, so one call (one listing of workers, one move of
    due jobs) serves them all. A queue behind Sentinel has no address of its own in its configuration.
    """
    pool = get_connection(queue_name).connection_pool
    kwargs = pool.connection_kwargs
    service = getattr(pool, "service_name", None)
    return (service, kwargs.get("host"), kwargs.get("port"), kwargs.get("path"), kwargs.get("db") or 0)


@functools.cache
def get_queue(queue_name: str) -> Queue:
    """The RQ queue, always with the JSON serializer: nothing this app reads from Redis is unpickled."""
    return django_rq.get_queue(
        queue_name,
        connection=get_connection(queue_name),
        serializer=JSONSerializer,
        commit_mode="auto",
    )


def reset() -> None:
    get_queue.cache_clear()
    get_connection.cache_clear()


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting in {"RQ_QUEUES", "RQ"}:
        reset()
