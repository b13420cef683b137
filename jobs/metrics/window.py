"""What the ledger says of the last ``JOBS['METRICS_WINDOW']`` seconds, in two queries whatever its size.

- jobs that ended in the window (finished, failed, cancelled), with the run time of the finished ones
  and the enqueue-to-start latency of first attempts (one query over the records that ended in the
  window or are running, found through the ``finished_at`` and ``status`` indexes);
- attempts that failed in the window, with their run time, how many were given up because their worker
  died, and how many ended their job (one query over ``FailedAttempt``, through its ``failed_at`` index).

Histograms are counted in SQL, one ``COUNT(...) FILTER`` (a ``CASE`` where the database has no FILTER)
per bucket, so a scrape reads grouped rows, never the records themselves. Only rows in the window are
read, so the cost follows the number of jobs per window, not the size of the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, F, FloatField, Func, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..exceptions import ABANDONED
from ..models import FailedAttempt, Job, Status

#: Upper bounds (seconds) of the buckets of both histograms, from a few milliseconds to half an hour.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


@dataclass
class Histogram:
    """Observations counted per bucket (``counts[i]``: those at most ``BUCKETS[i]``, cumulative), their
    number and their sum in seconds."""

    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    total: float = 0.0

    def add(self, counts: Sequence[int], count: int, total: float | None) -> None:
        self.counts = [mine + theirs for mine, theirs in zip(self.counts, counts, strict=True)]
        self.count += count
        self.total += _seconds(total)


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
    """Seconds from ``begin`` to ``end`` (two datetimes) as a float, computed by the database itself.

    Django's own ``end - begin`` on SQLite calls a Python function for every row and every use, which
    a scrape would pay dozens of times per record of the window.
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


def _buckets(prefix: str, expression: str, condition: Q) -> dict[str, Count]:
    """One conditional count per bucket: the rows that meet ``condition`` and whose ``expression`` is at
    most the bucket's bound."""
    return {
        f"{prefix}_{index}": Count("pk", filter=condition & Q(**{f"{expression}__lte": bound}))
        for index, bound in enumerate(BUCKETS)
    }


def _bucket_counts(row: Mapping[str, Any], prefix: str) -> list[int]:
    return [row[f"{prefix}_{index}"] for index in range(len(BUCKETS))]


def _read_jobs(window: Window, start: datetime) -> None:
    ended = Q(finished_at__gte=start)
    finished = ended & Q(status=Status.FINISHED)
    first_start = Q(attempts=1, started_at__gte=start)
    rows = (
        Job.objects.filter(ended | Q(status=Status.STARTED))
        .alias(
            run=Seconds(F("finished_at"), F("started_at")),
            wait=Seconds(F("started_at"), Coalesce("scheduled_for", "enqueued_at")),
        )
        .order_by()
        .values("queue", "function", "status")
        .annotate(
            ended=Count("pk", filter=ended),
            finished=Count("pk", filter=finished),
            run_sum=Sum("run", filter=finished),
            **_buckets("run", "run", finished),
            started=Count("pk", filter=first_start),
            wait_sum=Sum("wait", filter=first_start),
            **_buckets("wait", "wait", first_start),
        )
    )
    for row in rows:
        key = (row["queue"], row["function"])
        if row["ended"]:
            window.ended[(*key, row["status"])] = row["ended"]
        if row["finished"]:
            histogram = window.run_time.setdefault((*key, Status.FINISHED.value), Histogram())
            histogram.add(_bucket_counts(row, "run"), row["finished"], row["run_sum"])
        if row["started"]:
            histogram = window.latency.setdefault(key, Histogram())
            histogram.add(_bucket_counts(row, "wait"), row["started"], row["wait_sum"])


def _read_failed_attempts(window: Window, start: datetime) -> None:
    timed = Q(started_at__isnull=False)
    rows = (
        FailedAttempt.objects.filter(failed_at__gte=start)
        .alias(run=Seconds(F("failed_at"), F("started_at")))
        .order_by()
        .values("job__queue", "job__function")
        .annotate(
            failed=Count("pk"),
            # The attempt that failed its job for good: the job is failed, at this attempt.
            final=Count("pk", filter=Q(job__status=Status.FAILED, number=F("job__attempts"))),
            abandoned=Count("pk", filter=Q(error_class=ABANDONED)),
            timed=Count("pk", filter=timed),
            run_sum=Sum("run", filter=timed),
            **_buckets("run", "run", timed),
        )
    )
    for row in rows:
        key = (row["job__queue"], row["job__function"])
        window.failed_attempts[key] = row["failed"]
        window.retries[key] = row["failed"] - row["final"]
        window.abandoned[key] = row["abandoned"]
        if row["timed"]:
            histogram = window.run_time.setdefault((*key, Status.FAILED.value), Histogram())
            histogram.add(_bucket_counts(row, "run"), row["timed"], row["run_sum"])


def _seconds(value: float | None) -> float:
    return 0.0 if value is None else float(value)
