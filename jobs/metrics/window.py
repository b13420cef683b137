"""What the ledger says of the last ``JOBS['METRICS_WINDOW']`` seconds, in two queries whatever its size.

- jobs that ended in the window (finished, failed, cancelled), with the run time of the finished ones
  and the enqueue-to-start latency of first attempts (one query over the records that ended in the
  window or are running, found through the ``finished_at`` and ``status`` indexes);
- attempts that failed in the window, with their run time, how many were given up because their worker
  died, and how many ended their job (one query over ``FailedAttempt``, through its ``failed_at`` index).

Only rows of the window are read, so the cost follows the number of jobs per window, not the size of
the table. The database computes each row's durations once (``Seconds``) and sends them; they are
counted into buckets here. That is cheaper than counting each bucket in SQL, one ``COUNT(...) FILTER``
per bucket, which makes the database compute the durations again for every bucket (measured in
``bench/bench_metrics.py``: see the README's Metrics section).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Any

from django.db.models import BooleanField, ExpressionWrapper, F, FloatField, Func, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..exceptions import ABANDONED
from ..models import FailedAttempt, Job, Status

#: Upper bounds (seconds) of the buckets of both histograms, from a few milliseconds to half an hour.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
#: Rows fetched from the database at a time.
CHUNK = 2000


@dataclass
class Histogram:
    """Observations in seconds: how many fall in each bucket (and over the last one), and their sum."""

    per_bucket: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        # A negative duration (two hosts' clocks apart: started on one, ended on the other) counts as
        # none, since Prometheus takes a histogram's sum for a counter that never goes down.
        seconds = max(0.0, seconds)
        self.per_bucket[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    @property
    def counts(self) -> list[int]:
        """Cumulative: ``counts[i]`` observations were at most ``BUCKETS[i]`` seconds."""
        return list(accumulate(self.per_bucket))[: len(BUCKETS)]

    @property
    def count(self) -> int:
        return sum(self.per_bucket)


@dataclass
class Window:
    """The figures of one window, keyed by ``(queue, function)`` (and the outcome where there is one)."""

    seconds: float
    #: Jobs that reached a final status in the window, by (queue, function, status).
    ended: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: Run time of the attempts that ended in the window, by (queue, function, outcome).
    run_time: dict[tuple[str, str, str], Histogram] = field(default_factory=dict)
    #: Enqueue-to-start latency of the first attempts that started in the window, by (queue, function).
    latency: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    #: Failed attempts in the window, by (queue, function): all, retried after, and abandoned.
    failed_attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    retries: dict[tuple[str, str], int] = field(default_factory=dict)
    abandoned: dict[tuple[str, str], int] = field(default_factory=dict)


def collect(seconds: float, now: datetime | None = None) -> Window:
    """The figures of the last ``seconds`` seconds (two queries)."""
    start = (now or timezone.now()) - timedelta(seconds=seconds)
    window = Window(seconds=seconds)
    _read_jobs(window, start)
    _read_failed_attempts(window, start)
    return window


class Seconds(Func):
    """Seconds from ``end`` back to ``begin`` (two datetimes) as a float, computed by the database.

    Django's own ``end - begin`` on SQLite calls a Python function for every row.
    """

    output_field = FloatField()
    arity = 2
    template = "EXTRACT(EPOCH FROM (%(expressions)s))"
    arg_joiner = " - "

    def __init__(self, end: Any, begin: Any) -> None:
        super().__init__(end, begin)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler,
            connection,
            template="((julianday(%(expressions)s)) * 86400.0)",
            arg_joiner=") - julianday(",
        )


def _flag(condition: Q) -> ExpressionWrapper:
    return ExpressionWrapper(condition, output_field=BooleanField())


def _read_jobs(window: Window, start: datetime) -> None:
    ended = Q(finished_at__gte=start)
    rows = (
        Job.objects.filter(ended | Q(status=Status.STARTED))
        .order_by()
        .values_list(
            "queue",
            "function",
            "status",
            _flag(ended),
            # The latency of first attempts only: a retry waits for its backoff by design.
            _flag(Q(attempts=1, started_at__gte=start)),
            Seconds(F("finished_at"), F("started_at")),
            Seconds(F("started_at"), Coalesce("scheduled_for", "enqueued_at")),
        )
    )
    for queue, function, status, has_ended, first_start, run, wait in rows.iterator(chunk_size=CHUNK):
        if has_ended:
            key = (queue, function, status)
            window.ended[key] = window.ended.get(key, 0) + 1
            if status == Status.FINISHED and run is not None:
                window.run_time.setdefault(key, Histogram()).observe(run)
        if first_start and wait is not None:
            window.latency.setdefault((queue, function), Histogram()).observe(wait)


def _read_failed_attempts(window: Window, start: datetime) -> None:
    rows = (
        FailedAttempt.objects.filter(failed_at__gte=start)
        .order_by()
        .values_list(
            "job__queue",
            "job__function",
            # The attempt that failed its job for good: the job is failed, at this attempt.
            _flag(Q(job__status=Status.FAILED, number=F("job__attempts"))),
            "error_class",
            Seconds(F("failed_at"), F("started_at")),
        )
    )
    for queue, function, final, error_class, run in rows.iterator(chunk_size=CHUNK):
        key = (queue, function)
        window.failed_attempts[key] = window.failed_attempts.get(key, 0) + 1
        window.retries[key] = window.retries.get(key, 0) + (not final)
        window.abandoned[key] = window.abandoned.get(key, 0) + (error_class == ABANDONED)
        if run is not None:
            window.run_time.setdefault((*key, Status.FAILED.value), Histogram()).observe(run)
