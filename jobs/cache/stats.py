"""Counters per namespace: hits, misses, stale serves, refreshes, errors, and bypasses by reason.

A hit must cost one Redis round trip, so counts are kept in the process and added to Redis (one
pipeline) at the first count ``JOBS['CACHE_STATS_INTERVAL']`` seconds after the last flush, by ``flush()``
and ``read()``, and when the process exits. They are kept under the cache's own keys (``KEY_PREFIX``,
``CACHE_PREFIX``), so that two sites on one Redis count apart.

Counts go in numbered batches, each added by a script that adds a batch only if its number is above the
last one its process added: a batch whose sending timed out is sent again, with the earlier ones and
before the later ones, and is added once whether or not the hung Redis ran the first sending after all.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import secrets
import threading
import time
from collections import Counter
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.exceptions import RedisError

from ..conf import jobs_settings
from . import keys
from .store import CacheStore, store

KINDS = ("hits", "misses", "stale", "refreshes", "errors")
#: A page passed through uncached is counted as ``bypass:<reason>`` (see ``jobs.cache.views.REASONS``).
BYPASS = "bypass:"

#: Seconds Redis remembers the last batch a process added: far longer than a retry takes.
BATCH_TTL = 3600

_lock = threading.Lock()
_pending: Counter[tuple[str, str]] = Counter()
#: Batches sent without an answer, oldest first: (number, counts); sent again, with the same numbers.
_unsent: list[tuple[int, dict[tuple[str, str], int]]] = []
_batches = 0
_process = secrets.token_hex(8)
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
    global _flushed_at, _batches
    with _lock:
        _flushed_at = time.monotonic()
        if not _pending and not _unsent:
            return True
    cache = store()
    if not cache.available():
        return False
    with _lock:
        if _pending:
            _batches += 1
            _unsent.append((_batches, dict(_pending)))
            _pending.clear()
        batches = list(_unsent)
    try:
        with cache.client().pipeline(transaction=False) as pipe:
            for number, counts in batches:
                _add(pipe, cache, number, counts)
            pipe.execute()
    except (RedisError, OSError) as exc:
        cache.failed(exc)
        return False
    sent = {number for number, _ in batches}
    with _lock:
        _unsent[:] = [batch for batch in _unsent if batch[0] not in sent]
    return True


def _add(pipe: Any, cache: CacheStore, number: int, counts: dict[tuple[str, str], int]) -> None:
    by_namespace: dict[str, list[Any]] = {}
    for (namespace, kind), amount in counts.items():
        by_namespace.setdefault(namespace, []).extend((kind, amount))
    args: list[Any] = [number, BATCH_TTL]
    for namespace, pairs in by_namespace.items():
        args += [namespace, len(pairs) // 2, *pairs]
    made = [
        cache.key(keys.stats_batch(_process)),
        cache.key(keys.stats_namespaces()),
        *(cache.key(keys.stats(namespace)) for namespace in by_namespace),
    ]
    # EVAL, not EVALSHA: no round trip before the pipeline to see whether Redis holds the script.
    pipe.eval(_ADD_BATCH, len(made), *made, *args)


# KEYS: the last batch the process added, the set of namespaces, then one hash per namespace of the batch.
# ARGV: the batch's number, the last batch's expiry (s), then per namespace: its name, its number of
# counts, and a kind and an amount for each.
_ADD_BATCH = """
if tonumber(ARGV[1]) <= tonumber(redis.call('GET', KEYS[1]) or '0') then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local at = 3
for k = 3, #KEYS do
  redis.call('SADD', KEYS[2], ARGV[at])
  local n = tonumber(ARGV[at + 1])
  for j = 1, n do
    redis.call('HINCRBY', KEYS[k], ARGV[at + 2 * j], ARGV[at + 2 * j + 1])
  end
  at = at + 2 + 2 * n
end
return 1
"""


def _forget_the_parents_counts() -> None:
    """A forked child (an RQ work horse) starts with none: its parent adds its own."""
    global _process, _batches, _lock
    _lock = threading.Lock()
    _pending.clear()
    _unsent.clear()
    _batches = 0
    _process = secrets.token_hex(8)


os.register_at_fork(after_in_child=_forget_the_parents_counts)


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
        namespaces = sorted(_text(n) for n in client.smembers(cache.key(keys.stats_namespaces())))
        with client.pipeline(transaction=False) as pipe:
            for namespace in namespaces:
                pipe.hgetall(cache.key(keys.stats(namespace)))
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
        _unsent.clear()
    cache = store()
    client = cache.client()
    namespaces = [_text(n) for n in client.smembers(cache.key(keys.stats_namespaces()))]
    client.delete(cache.key(keys.stats_namespaces()), *[cache.key(keys.stats(n)) for n in namespaces])


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "JOBS":
        _interval.cache_clear()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
