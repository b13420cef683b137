"""The cache's side of Redis: one ``GET`` per lookup, entries with their freshness, locks, tag sets.

An entry is one Redis string holding ``(fresh_until, payload)`` encoded by django-redis's own serializer
and compressor, so a lookup is one round trip and its freshness needs no second key. Redis expires the
entry at the end of its stale window; before that, ``fresh_until`` says whether it is fresh or stale.

When Redis fails (down, slow past the socket timeouts of ``CACHES``), the store stays out of the way for
``JOBS['CACHE_RETRY_AFTER']`` seconds, so requests run uncached without paying the timeout each time, and
logs one warning per ``JOBS['CACHE_WARN_INTERVAL']``.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.base import default_key_func
from django.core.signals import setting_changed
from django.dispatch import receiver
from django_redis.exceptions import ConnectionInterrupted
from redis import Redis
from redis.exceptions import (
    ClusterError,
    LockError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.lock import Lock

from ..conf import jobs_settings
from ..exceptions import JobsConfigurationError
from ..transport import scripts
from ..transport.connection import MisconfError
from . import keys

logger = logging.getLogger("jobs")

#: What a failing or unreachable Redis raises, through redis-py or through django-redis.
ERRORS = (RedisError, ConnectionInterrupted, OSError)

FRESH, STALE, MISSING = "fresh", "stale", "missing"


class Unstorable(Exception):
    """A value that the cache's serializer cannot encode, whatever it raised (a class pickle refuses, a
    ``__reduce__`` that fails, a value nested too deeply): the caller gets it, uncached."""


#: Refusals that say Redis cannot serve now (a replica, a cluster in failover, out of memory, unable to
#: persist: ``MISCONF``, which a worker process raises as ``MisconfError`` and others as its message), rather
#: than that a key holds what a command cannot work on.
_UNAVAILABLE = (ReadOnlyError, ClusterError, TryAgainError, OutOfMemoryError, MisconfError)


def refused(exc: BaseException) -> bool:
    """Whether Redis answered and refused a command for what a key holds (``WRONGTYPE``, not an
    integer): a data error, not a sign that Redis is down."""
    if isinstance(exc, ConnectionInterrupted):  # django-redis's wrapper of redis-py's error
        exc = exc.__cause__ or exc
    return (
        isinstance(exc, ResponseError)
        and not isinstance(exc, _UNAVAILABLE)
        and not str(exc).startswith(("BUSY", "MASTERDOWN", "MISCONF"))
    )


class CacheStore:
    """The Redis behind one ``CACHES`` alias, as the decorators use it."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        backend = caches[alias]
        if not hasattr(backend, "client") or not hasattr(backend.client, "get_client"):
            raise JobsConfigurationError(
                f"CACHES[{alias!r}] must use django_redis.cache.RedisCache for the jobs cache decorators"
            )
        self.backend: Any = backend  # django_redis.cache.RedisCache, which ships no type hints
        self.codec = backend.client
        self._redis: Redis | None = None
        self._down_until = 0.0
        self._warned_at = -float("inf")
        self._refused_at = -float("inf")
        self._guard = threading.Lock()
        self._entry_prefixes: dict[tuple[str, int], str] = {}

    def client(self) -> Redis:
        if self._redis is None:
            self._redis = self.codec.get_client(write=True)
        return self._redis

    def key(self, name: str) -> str:
        return self.backend.make_key(name)

    def entry_key(self, namespace: str, version: int, hashed: str) -> str:
        """The made key of an entry; with Django's default key function, without calling it per entry."""
        try:
            return self._entry_prefixes[namespace, version] + hashed
        except KeyError:
            pass
        if self.backend.key_func is not default_key_func:
            return self.key(keys.entry(namespace, version, hashed))
        self._entry_prefixes[namespace, version] = self.key(keys.entry(namespace, version, ""))
        return self._entry_prefixes[namespace, version] + hashed

    # Faults

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        """Stay out of Redis's way for a while, and say so once per interval. A command Redis refused
        for what a key holds says nothing of Redis: it is logged, and the cache stays on."""
        if refused(exc):
            self._refused(exc)
            return
        now = time.monotonic()
        with self._guard:
            self._down_until = now + jobs_settings.CACHE_RETRY_AFTER
            warn = now - self._warned_at >= jobs_settings.CACHE_WARN_INTERVAL
            if warn:
                self._warned_at = now
        if warn:
            logger.warning(
                "Cache %r unreachable, running uncached for %ss: %s",
                self.alias,
                jobs_settings.CACHE_RETRY_AFTER,
                exc,
            )

    def _refused(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._guard:
            log = now - self._refused_at >= jobs_settings.CACHE_WARN_INTERVAL
            if log:
                self._refused_at = now
        if log:
            logger.error("Cache %r: Redis refused a command, which ran uncached: %s", self.alias, exc)

    # Entries

    def get(self, key: str) -> tuple[str, Any, float]:
        """``(FRESH | STALE | MISSING, payload, fresh_until)`` for a made key, in one ``GET``."""
        return self._entry(key, self.client().get(key))

    def get_for_update(
        self, key: str, tags: Sequence[str], *, refreshing: bool = False
    ) -> tuple[str, Any, float, list[Any]]:
        """``get``, and the generations (the entry's own, then its ``tags``') that ``put`` is to find of a
        value computed from now on, in one round trip. ``refreshing``: the caller computes without the
        entry's lock (a refresh job), and holds the entry's refresh flag meanwhile instead, so that
        ``invalidate()`` knows a computation is in flight."""
        generation_keys = [
            self.key(keys.entry_generation(key)),
            *(self.key(keys.tag_generation(t)) for t in tags),
        ]
        with self.client().pipeline(transaction=False) as pipe:
            if refreshing:
                pipe.set(
                    self.key(keys.refresh_flag(key)), b"1", px=_milliseconds(jobs_settings.CACHE_LOCK_TIMEOUT)
                )
            pipe.get(key)
            pipe.mget(generation_keys)
            *_, raw, generations = pipe.execute()
        return (*self._entry(key, raw), list(generations))

    def _entry(self, key: str, raw: Any) -> tuple[str, Any, float]:
        if raw is None:
            return MISSING, None, 0.0
        try:
            fresh_until, payload = self.codec.decode(raw)
        except Exception as exc:  # stored, but it does not load (a class changed since): computed again
            logger.warning("A cache entry %s cannot be read (%r); it counts as missing", key, exc)
            return MISSING, None, 0.0
        return (FRESH if time.time() < fresh_until else STALE), payload, fresh_until

    def put(
        self,
        key: str,
        payload: Any,
        ttl: float,
        stale: float,
        tags: Sequence[str] = (),
        generations: Sequence[Any] | None = None,
    ) -> float:
        """Store a payload, fresh for ``ttl`` less up to ``CACHE_JITTER`` of it; returns the fresh seconds
        (0: not stored). Raises ``Unstorable`` for a payload that cannot be encoded.

        A payload comes with the ``generations`` read before it was computed (``get_for_update``): it is
        stored only if neither the entry (``invalidate()``) nor one of its tags (``invalidate_tags()``)
        was invalidated since, since it may hold what they replaced. Without them (None) it is stored
        as it is, untagged."""
        fresh = ttl * (1 - jobs_settings.CACHE_JITTER * random.random())  # noqa: S311 - jitter only
        try:
            data = self.codec.encode((time.time() + fresh, payload), allow_int=False)
        except Exception as exc:  # pickle raises what the payload's own code raises, or RecursionError
            raise Unstorable(f"{type(exc).__name__}: {exc}") from exc
        expires_ms = max(1, int((fresh + stale) * 1000))
        if generations is None:
            if tags:
                raise ValueError("put() needs the generations read before a tagged payload was computed")
            self.client().set(key, data, px=expires_ms)
            return fresh
        if len(generations) != len(tags) + 1:
            raise ValueError("put() needs the entry's generation and each tag's, read by get_for_update()")
        stored = scripts.run(
            self.client(),
            _PUT_UNLESS_INVALIDATED,
            keys=[
                key,
                *(self.key(keys.tag(t)) for t in tags),
                self.key(keys.entry_generation(key)),
                *(self.key(keys.tag_generation(t)) for t in tags),
            ],
            args=[
                data,
                expires_ms,
                int(time.time() * 1000),
                int(fresh + stale) + 1,
                len(tags),
                *(b"" if g is None else g for g in generations),
            ],
        )
        return fresh if stored else 0.0

    def invalidate(self, key: str) -> int:
        """Delete one entry (a made key); returns 1 if there was one. A caller computing it meanwhile
        (holding its lock or its refresh flag) does not store what it computed."""
        return int(
            scripts.run(
                self.client(),
                _INVALIDATE_ENTRY,
                keys=[
                    key,
                    self.key(keys.entry_generation(key)),
                    self.key(keys.lock(key)),
                    self.key(keys.refresh_flag(key)),
                ],
                args=[_new_generation(), GENERATION_TTL],
            )
        )

    def delete(self, *made_keys: str) -> int:
        return self.client().delete(*made_keys) if made_keys else 0

    def lock(self, key: str) -> Lock:
        """django-redis's lock for computing one entry; it expires if its holder dies."""
        return self.backend.lock(
            keys.lock(key),
            timeout=jobs_settings.CACHE_LOCK_TIMEOUT,
            sleep=0.02,
            blocking_timeout=jobs_settings.CACHE_LOCK_WAIT,
        )

    def claim_refresh(self, key: str) -> bool:
        """True for the one caller that should refresh a stale entry; the claim expires by itself."""
        flag = self.key(keys.refresh_flag(key))
        return bool(
            self.client().set(flag, b"1", nx=True, px=_milliseconds(jobs_settings.CACHE_LOCK_TIMEOUT))
        )

    def release_refresh(self, key: str) -> None:
        self.client().delete(self.key(keys.refresh_flag(key)))

    def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Delete every entry stored under any of ``tags``; returns how many were deleted.

        One script, so atomic: each tag's index is read and dropped with its entries, and its generation
        moves on, which keeps a value computed before this from being stored after it. An entry tagged
        after this lands in a new index."""
        names = [keys.check_tag(tag) for tag in tags]
        if not names:
            return 0
        tag_keys = [self.key(keys.tag(name)) for name in names]
        generation_keys = [self.key(keys.tag_generation(name)) for name in names]
        return int(
            scripts.run(
                self.client(),
                _INVALIDATE,
                keys=[*tag_keys, *generation_keys],
                args=[len(names), GENERATION_TTL, _new_generation()],
            )
        )


#: Seconds a generation outlives its last invalidation: far longer than any computation.
GENERATION_TTL = 24 * 3600


def _new_generation() -> str:
    """A generation never drawn before: one that expired and is set again cannot equal what a reader in
    flight read before (as a counter starting again at 1 would)."""
    return secrets.token_hex(16)


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


# KEYS: the entry, its N tag indexes, the entry's generation, its tags' N generations. ARGV: the data, its
# expiry (ms), now (ms), the indexes' expiry (s), N, then the generations (the entry's, then each tag's)
# when the value's computation began ('' none).
# A tag's index holds its entries scored by when they expire, and drops the expired ones at every write
# (so that a tag written for ever holds only live entries); it lives as long as its longest-lived entry.
_PUT_UNLESS_INVALIDATED = """
local n = tonumber(ARGV[5])
for i = 0, n do
  if (redis.call('GET', KEYS[2 + n + i]) or '') ~= ARGV[6 + i] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 1, n do
  redis.call('ZADD', KEYS[1 + i], tonumber(ARGV[3]) + tonumber(ARGV[2]), KEYS[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[1 + i], '-inf', ARGV[3])
  redis.call('EXPIRE', KEYS[1 + i], ARGV[4], 'NX')
  redis.call('EXPIRE', KEYS[1 + i], ARGV[4], 'GT')
end
return 1
"""


# KEYS: N tag indexes, then their N generations. ARGV: N, the generations' expiry (s), the new generation.
# Every read comes before the first write, so that a key of an unexpected type fails the script before it
# changed anything.
_INVALIDATE = """
local n = tonumber(ARGV[1])
local members = {}
for i = 1, n do
  members[i] = redis.call('ZRANGE', KEYS[i], 0, -1)
end
local deleted = 0
for i = 1, n do
  redis.call('SET', KEYS[n + i], ARGV[3], 'EX', ARGV[2])
  local entries = members[i]
  for first = 1, #entries, 1000 do
    deleted = deleted + redis.call('DEL', unpack(entries, first, math.min(first + 999, #entries)))
  end
  redis.call('DEL', KEYS[i])
end
return deleted
"""


# KEYS: the entry, its generation, its lock, its refresh flag. ARGV: the new generation, its expiry (s).
# The generation moves on only while someone computes the entry (it holds the lock or the refresh flag):
# what they store is checked against it. Nobody else can store the entry, so nothing else needs the key.
_INVALIDATE_ENTRY = """
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
end
return redis.call('DEL', KEYS[1])
"""


def release(cache: CacheStore, lock: Lock) -> None:
    """Let go of an entry's lock; not while the cache leaves a failing Redis alone (the lock expires by
    itself, and a hung Redis would cost another socket timeout)."""
    if not cache.available():
        return
    try:
        lock.release()
    except (LockError, *ERRORS):
        pass  # it expired, or Redis went away: either way it is no longer ours


_stores: dict[str | None, CacheStore] = {}


def store(alias: str | None = None) -> CacheStore:
    """The store of a ``CACHES`` alias (``JOBS['CACHE_ALIAS']`` by default), one per process."""
    try:
        return _stores[alias]
    except KeyError:
        pass
    named = alias or jobs_settings.CACHE_ALIAS
    found = _stores.get(named) or CacheStore(named)
    _stores[named] = _stores[alias] = found
    return found


def forget_stores() -> None:
    """Forget every store, and so what each knew of Redis's failures (as a change of settings does)."""
    _stores.clear()


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting in {"CACHES", "JOBS"}:
        forget_stores()
