"""The one ``JOBS`` setting, merged over documented defaults and read lazily.

Queues and their Redis connections stay where django-rq keeps them (``RQ_QUEUES``),
and the cache backend stays in Django's ``CACHES``; ``JOBS`` only holds what is ours.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # Queue used when a job names none.
    "DEFAULT_QUEUE": "default",
    # Largest arguments (bytes of their JSON, args and kwargs together) enqueue() accepts, so that no call
    # fills the database or a worker's memory; big data belongs elsewhere, passed by id (None: no bound).
    "MAX_ARGUMENTS_BYTES": 256 * 1024,
    # Seconds a job may run before RQ stops it (None: the queue's DEFAULT_TIMEOUT).
    "DEFAULT_TIMEOUT": None,
    # Attempts a job gets when its decorator names none (1 = no automatic retry).
    "DEFAULT_MAX_ATTEMPTS": 1,
    # Exponential backoff: base * 2**n seconds, capped, with jitter.
    "BACKOFF_BASE": 2,
    "BACKOFF_MAX": 3600,
    # How often (seconds) a worker moves due jobs (delays, retry backoffs, rate-limited jobs) to their queues.
    "DUE_INTERVAL": 1,
    # How often (seconds) a worker pushes records that could not reach Redis at commit.
    "RELAY_INTERVAL": 5,
    # Records queued longer than this without being found in Redis are pushed again.
    "RELAY_GRACE": 30,
    # A started job whose worker is gone is detected within this many seconds.
    "ABANDONED_AFTER": 60,
    # How often (seconds) a worker looks for waiting records that Redis lost (FLUSHALL, failover).
    "RECONCILE_INTERVAL": 60,
    # Retention: finished and cancelled records are deleted after this many seconds, and beyond the
    # newest FINISHED_PER_QUEUE of each queue; failed ones after RETAIN_FAILED (None: never).
    "RETAIN_FINISHED": 7 * 24 * 3600,
    "RETAIN_FINISHED_PER_QUEUE": 100_000,
    "RETAIN_FAILED": 30 * 24 * 3600,
    # How often (seconds) a worker prunes records; manage.py jobs_prune does it on demand.
    "PRUNE_INTERVAL": 3600,
    # PostgreSQL only: seconds the upkeep (a worker's maintenance, the jobs_* commands) and a forking worker
    # recording its killed work horse wait for a row lock, before they leave that record for later: a lock
    # held longer belongs to a process stopped or cut off inside a transaction.
    "ROW_LOCK_TIMEOUT": 2,
    # Seconds before a push to Redis gives up when Redis does not answer (only where RQ_QUEUES sets none).
    "REDIS_CONNECT_TIMEOUT": 2,
    "REDIS_SOCKET_TIMEOUT": 5,
    # After a push to Redis fails, enqueues skip Redis for this many seconds and leave their records to
    # the relay, so that a hung Redis costs one request a timeout, not every request.
    "ENQUEUE_RETRY_AFTER": 5,
    # Prefix of every Redis key this app writes itself (not RQ's, not the cache's).
    "REDIS_PREFIX": "jobs:",
    # Jobs that one jobs.worker.ThreadedWorker process runs at once, each in a thread of its own.
    "WORKER_CONCURRENCY": 8,
    # How long RQ keeps finished results in Redis; the record keeps them anyway.
    "RQ_RESULT_TTL": 0,
    # PostgreSQL only: commit the worker's own record updates (claim, finish) without waiting for the
    # WAL flush. A PostgreSQL crash may then lose the last fraction of a second of them (see README).
    "LEDGER_ASYNC_COMMIT": False,
    # Recurring jobs declared in settings: {name: {"function": ..., "cron": ... or "every": ...,
    # "args": [...], "kwargs": {...}, "timezone": ..., "catch_up": ...}}, synced to the Schedule table.
    "SCHEDULES": {},
    # A tick that finds no worker for this many seconds past its time is missed: missed ticks run once
    # on catch-up (or are skipped, per schedule); the others each run late.
    "SCHEDULE_GRACE": 30,
    # Cache-aside decorators (jobs.cache): the CACHES alias (django-redis) and the app's key prefix.
    "CACHE_ALIAS": "default",
    "CACHE_PREFIX": "jobs-cache",
    # Seconds an entry is fresh when a decorator names no ttl, less up to CACHE_JITTER (a fraction) of it.
    "CACHE_TTL": 300,
    "CACHE_JITTER": 0.1,
    # Seconds a stale entry is still served while one refresh runs, when a decorator names none (0: off).
    "CACHE_STALE": 0,
    # Seconds the computing caller holds the lock at most, and others wait for it at most.
    "CACHE_LOCK_TIMEOUT": 10,
    "CACHE_LOCK_WAIT": 5.0,
    # After a Redis error the cache is bypassed for this many seconds; one warning per CACHE_WARN_INTERVAL.
    "CACHE_RETRY_AFTER": 5,
    "CACHE_WARN_INTERVAL": 60,
    # Seconds between two flushes of a process's hit/miss counts to Redis.
    "CACHE_STATS_INTERVAL": 5,
    # Metrics (jobs.metrics): the bearer token a Prometheus scraper sends (None: staff users only), and
    # the seconds of recent history the jobs_window_* figures and histograms count.
    "METRICS_TOKEN": None,
    "METRICS_WINDOW": 60,
}


@functools.cache
def _merged() -> dict[str, Any]:
    user = getattr(settings, "JOBS", None) or {}
    return {**DEFAULTS, **user}


class _JobsSettings:
    """Attribute access to the merged ``JOBS`` setting (``jobs_settings.DEFAULT_QUEUE``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return _merged()[name]
        except KeyError:
            raise AttributeError(f"JOBS has no setting {name!r}") from None


jobs_settings = _JobsSettings()


@receiver(setting_changed)
def _reset_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting == "JOBS":
        _merged.cache_clear()
