"""The figures of the admin dashboard, one function per figure, gathered section by section.

Live figures (queue lengths, RQ's registries, workers) come from Redis; counts and history come from
the ledger in a fixed number of queries, whatever the number of jobs. A figure that needs Redis returns
``{"error": ...}`` instead of raising when Redis does not answer, so the page always renders.

Each entry of ``SECTIONS`` is one block of the page: ``collect()`` gives its data (also served as JSON),
and its template renders it with that data as ``data``. A new section is one more entry.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import Coalesce, TruncMinute
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import dispatch, pause
from ..cache import stats
from ..cache.store import ERRORS
from ..cache.views import REASONS
from ..exceptions import JobsConfigurationError
from ..models import FailedAttempt, Job, Status
from ..transport import queues as transport

logger = logging.getLogger("jobs")

#: Minutes of history in the throughput chart.
HISTORY_MINUTES = 60


def queue_names() -> list[str]:
    return sorted(settings.RQ_QUEUES)


T = TypeVar("T")


def live(read: Callable[[], T]) -> tuple[T | None, str | None]:
    """A live figure read from Redis, or None and why there is none.

    A Redis that hangs costs every read its whole socket timeout: after one times out, the live
    figures are left out while this process's pushes skip Redis (``dispatch.breaker``), so that a page
    that refreshes itself does not wait for Redis on every refresh. Whatever else a read raises (an
    error, data that does not parse) leaves its figure out, not the page.
    """
    if dispatch.breaker.is_open():
        return None, str(LEFT_OUT)
    try:
        return read(), None
    except RedisTimeoutError as exc:
        dispatch.breaker.open()
        return None, str(exc)
    except RedisError as exc:
        return None, str(exc)
    except Exception as exc:
        logger.exception("Dashboard: a live figure could not be read")
        return None, repr(exc)


#: Why the live figures are missing while Redis is left alone after a timeout.
LEFT_OUT = _("Redis timed out a moment ago: its live figures are left out for a few seconds")


def redis_queue_counts() -> dict[str, Any]:
    """Per queue, what RQ holds: the queue's length and the size of each registry (one pipeline each).

    Returns ``{"error": None, "counts": {queue: {...}}}``, or the error and no counts.
    """
    counts, error = live(lambda: {name: transport.counts(name) for name in queue_names()})
    return {"error": error, "counts": counts or {}}


def ledger_counts(by_function: bool = False) -> dict[tuple[str, ...], dict[str, int]]:
    """The records in each status, per queue, or per queue and function (one query)."""
    fields = ("queue", "status", "function") if by_function else ("queue", "status")
    counts: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(Status.values, 0))
    for row in Job.objects.order_by().values_list(*fields).annotate(n=Count("pk")):
        queue, status, *function, n = row
        counts[(queue, *function)][status] = n
    return counts


def ledger_queue_counts() -> dict[str, dict[str, int]]:
    """Per queue, the records in each status (one query)."""
    counts = ledger_counts()
    return {name: counts[(name,)] for name in sorted({*queue_names(), *(key[0] for key in counts)})}


def paused_queues() -> set[str] | None:
    """The paused queues (one round trip per Redis server), or None when Redis does not answer."""
    paused, _error = live(lambda: pause.paused(queue_names()))
    return paused


def queues() -> list[dict[str, Any]]:
    """Both views of every queue side by side: RQ's (live) and the ledger's (the truth)."""
    in_redis = redis_queue_counts()
    paused = paused_queues()
    known = set(queue_names())
    return [
        {
            "name": name,
            "redis": in_redis["counts"].get(name),
            "ledger": ledger,
            "error": in_redis["error"],
            "known": name in known,
            "paused": None if paused is None else name in paused,
        }
        for name, ledger in ledger_queue_counts().items()
    ]


def workers() -> dict[str, Any]:
    """The workers RQ knows of, on every Redis that holds a queue (one listing per Redis server)."""
    found, error = live(lambda: transport.workers(queue_names()))
    return {"error": error, "workers": sorted(found or [], key=lambda w: w["name"])}


def throughput(minutes: int = HISTORY_MINUTES, now: datetime | None = None) -> dict[str, Any]:
    """Jobs finished and attempts failed in each of the last ``minutes`` minutes (two queries)."""
    now = now or timezone.now()
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes - 1)
    finished = dict(
        Job.objects.filter(status=Status.FINISHED, finished_at__gte=start)
        .annotate(minute=TruncMinute("finished_at"))
        .order_by()
        .values_list("minute")
        .annotate(n=Count("pk"))
    )
    failed = dict(
        FailedAttempt.objects.filter(failed_at__gte=start)
        .annotate(minute=TruncMinute("failed_at"))
        .order_by()
        .values_list("minute")
        .annotate(n=Count("pk"))
    )
    finished = {_minute(moment): n for moment, n in finished.items()}
    failed = {_minute(moment): n for moment, n in failed.items()}
    buckets = []
    for step in range(minutes):
        minute = start + timedelta(minutes=step)
        buckets.append(
            {"minute": minute, "finished": finished.get(minute, 0), "failed": failed.get(minute, 0)}
        )
    peak = max((max(b["finished"], b["failed"]) for b in buckets), default=0)
    return {
        "minutes": buckets,
        "peak": peak,
        "finished": sum(b["finished"] for b in buckets),
        "failed": sum(b["failed"] for b in buckets),
    }


def _minute(moment: datetime) -> datetime:
    """A bucket's key: an aware datetime (aware ones hash by their instant, whatever their zone)."""
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    return moment.astimezone(timezone.get_current_timezone()).replace(second=0, microsecond=0)


def _due_and_waiting(now: datetime) -> QuerySet[Job]:
    """Records due to run and pushed (their ``READY_AT`` is when they became ready)."""
    return Job.objects.filter(
        Q(status=Status.QUEUED) | Q(status=Status.SCHEDULED, scheduled_for__lte=now),
        undispatched_since__isnull=True,
    )


#: When a waiting record became ready to run.
READY_AT = Coalesce("scheduled_for", "retried_at", "enqueued_at")


def oldest_waiting(now: datetime | None = None) -> dict[str, Any] | None:
    """The job that has waited longest for a worker, among those due to run (one query)."""
    now = now or timezone.now()
    record = (
        _due_and_waiting(now)
        .annotate(ready_at=READY_AT)
        .order_by("ready_at")
        .values("pk", "function", "queue", "ready_at")
        .first()
    )
    if record is None:
        return None
    return {**record, "age_seconds": max(0.0, (now - record["ready_at"]).total_seconds())}


def oldest_waiting_by_queue(now: datetime | None = None) -> dict[str, float]:
    """Per queue, the seconds its longest-waiting due job has waited for a worker (one query); a queue
    with no such job is left out."""
    now = now or timezone.now()
    rows = _due_and_waiting(now).order_by().values_list("queue").annotate(oldest=Min(READY_AT))
    return {queue: max(0.0, (now - oldest).total_seconds()) for queue, oldest in rows}


def undispatched_count() -> int:
    """Records waiting for the relay because Redis could not take them (one query)."""
    return Job.objects.undispatched().count()


def summary() -> dict[str, Any]:
    return {"oldest_waiting": oldest_waiting(), "undispatched": undispatched_count()}


def cache() -> dict[str, Any]:
    """Hits, misses, stale serves, refreshes, errors and bypasses (by reason) of the cache decorators,
    per namespace (Redis)."""
    try:
        counts = stats.read()
    except (*ERRORS, JobsConfigurationError) as exc:
        return {"error": str(exc)}
    return {"namespaces": [_cache_row(name, figures) for name, figures in counts.items()]}


def _cache_row(name: str, figures: dict[str, Any]) -> dict[str, Any]:
    reasons = [
        {"reason": reason, "count": n, "why": str(REASONS.get(reason, reason))}
        for reason, n in figures["reasons"].items()
    ]
    return {"name": name, **figures, "reasons": reasons}


@dataclass(frozen=True)
class Section:
    """One block of the dashboard: its data and the template that shows it."""

    name: str
    title: str | Promise
    template: str
    collect: Callable[[], Any]


SECTIONS: list[Section] = [
    Section("summary", _("At a glance"), "jobs/admin/dashboard/summary.html", summary),
    Section("queues", _("Queues"), "jobs/admin/dashboard/queues.html", queues),
    Section("workers", _("Workers"), "jobs/admin/dashboard/workers.html", workers),
    Section("throughput", _("Last hour"), "jobs/admin/dashboard/throughput.html", throughput),
    Section("cache", _("Cache"), "jobs/admin/dashboard/cache.html", cache),
]


def snapshot() -> dict[str, Any]:
    """Every section's data, by section name."""
    return {section.name: section.collect() for section in SECTIONS}
