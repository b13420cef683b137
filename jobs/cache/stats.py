"""Counters per namespace: hits, misses, stale serves, refreshes, errors, and bypasses by reason.

A hit must cost one Redis round trip, so counts are kept in the process and added to Redis (one
pipeline of ``HINCRBY``) at the first count ``JOBS['CACHE_STATS_INTERVAL']`` seconds after the last
flush, by ``flush()`` and ``read()``, and when the process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import threading
import time
from collections import Counter
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.exceptions import RedisError

from .. import keys
from ..conf import jobs_settings
from .store import store

KINDS = ("hits", "misses", "stale", "refreshes", "errors")
#: A page passed through uncached is counted as ``bypass:<reason>`` (see ``jobs.cache.views.REASONS``).
BYPASS = "bypass:"

_lock = threading.Lock()
_pending: Counter[tuple[str, str]] = Counter()
_flushed_at = time.monotonic()


def count(namespace: str, kind: str) -> None:
    """Count one event (one of ``KINDS``, or ``bypass:<reason>``); now and then, send the counts to Redis."""
    with _lock:
        _pending[namespace, kind] += 1
    if time.monotonic() >= _flushed_at + _interval():
        flush()


@functools.cache
def _interval() -> float:
    return jobs_settings.CACHE_STATS_INTERVAL


def flush() -> bool:
    """Add this process's counts to Redis; on failure they are kept for the next try. While the cache
    leaves Redis alone after a failure (``CACHE_RETRY_AFTER``), so does this."""
    global _flushed_at
    with _lock:
        _flushed_at = time.monotonic()
        taken = dict(_pending)
        _pending.clear()
    if not taken:
        return True
    cache = store()
    if cache.available():
        try:
            with cache.client().pipeline(transaction=False) as pipe:
                for (namespace, kind), amount in taken.items():
                    pipe.hincrby(keys.cache_stats(namespace), kind, amount)
                    pipe.sadd(keys.cache_namespaces(), namespace)
                pipe.execute()
            return True
        except (RedisError, OSError) as exc:
            cache.failed(exc)
    with _lock:
        _pending.update(taken)
    return False


@atexit.register
def _flush_at_exit() -> None:
    if _pending:
        with contextlib.suppress(Exception):
            flush()


class _LeftAlone(RedisError):
    """The cache leaves Redis alone for now: a failure a moment ago."""

    def __init__(self) -> None:
        super().__init__("the cache leaves Redis alone for a few seconds after it failed")


def read() -> dict[str, dict[str, Any]]:
    """Counts per namespace since the last ``reset()``, from every process that flushed (this one first).

    Each namespace has its ``KINDS``, ``bypasses`` (their sum) and ``reasons`` (bypasses by reason).
    """
    flush()
    cache = store()
    if not cache.available():
        raise _LeftAlone()
    client = cache.client()
    try:
        namespaces = sorted(_text(n) for n in client.smembers(keys.cache_namespaces()))
        with client.pipeline(transaction=False) as pipe:
            for namespace in namespaces:
                pipe.hgetall(keys.cache_stats(namespace))
            rows = pipe.execute()
    except (RedisError, OSError) as exc:
        cache.failed(exc)
        raise
    return {namespace: _figures(row) for namespace, row in zip(namespaces, rows, strict=True)}


def _figures(row: dict[bytes, bytes]) -> dict[str, Any]:
    figures: dict[str, Any] = {kind: int(row.get(kind.encode(), 0)) for kind in KINDS}
    reasons = {
        _text(field)[len(BYPASS) :]: int(value)
        for field, value in row.items()
        if _text(field).startswith(BYPASS)
    }
    figures["bypasses"] = sum(reasons.values())
    figures["reasons"] = dict(sorted(reasons.items()))
    return figures


def reset() -> None:
    """Forget every count, here and in Redis."""
    with _lock:
        _pending.clear()
    client = store().client()
    namespaces = [_text(n) for n in client.smembers(keys.cache_namespaces())]
    client.delete(keys.cache_namespaces(), *[keys.cache_stats(n) for n in namespaces])


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "JOBS":
        _interval.cache_clear()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
