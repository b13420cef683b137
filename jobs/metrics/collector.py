"""The Prometheus collector of `jobs`: every figure read at scrape time from the ledger and Redis.

Nothing is counted in the processes that run jobs, so the figures are the same whichever web process
answers the scrape, however many workers run on however many hosts, and survive their restarts. A scrape
costs a fixed number of queries (see ``QUERIES``) and of Redis round trips per queue and per worker,
whatever the size of the ledger.

django-rq's ``RQCollector`` (RQ's registries and workers, ``rq_*``) is collected here too, so that one
scrape gets both. A part that Redis cannot answer is left out and ``jobs_metrics_part_up`` says so; the
ledger's figures are exported all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import dispatch
from ..admin import figures
from ..cache import stats
from ..cache.store import ERRORS
from ..conf import jobs_settings
from ..exceptions import JobsConfigurationError
from ..transport.metrics import rq_collector
from . import window as recent

logger = logging.getLogger("jobs")

#: Database queries of one scrape: the ledger by queue, function and status, the oldest waiting job
#: per queue, the undispatched records, and the window's two.
QUERIES = 5
#: The parts read from the queues' Redis. A hung Redis costs a read its whole socket timeout: once one
#: timed out, they are left out for ``ENQUEUE_RETRY_AFTER`` seconds, as this process's pushes are
#: (``jobs.dispatch``), so that a scrape answers well within Prometheus' timeout. The cache's part
#: follows the cache's own rule (``CACHE_RETRY_AFTER``).
QUEUES_REDIS = ("rq", "paused")
#: Cache counters exported, with the name of their family.
CACHE_COUNTERS = {
    "hits": "jobs_cache_hits",
    "misses": "jobs_cache_misses",
    "stale": "jobs_cache_stale",
    "refreshes": "jobs_cache_refreshes",
    "errors": "jobs_cache_errors",
}


class JobsCollector(Collector):
    """The figures of the admin dashboard, and the histograms of the recent window, as metric families."""

    def __init__(self) -> None:
        self.rq = rq_collector()

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "jobs_metrics_part_up",
            "1 when this part of the figures could be read at this scrape, 0 when it failed (see the logs).",
            labels=["part"],
        )
        yield from self._ledger()
        yield from self._window()
        for part, read in (("rq", self._rq), ("paused", self._paused), ("cache", self._cache)):
            families = None if part in QUEUES_REDIS and dispatch.breaker.is_open() else _guarded(part, read)
            up.add_metric([part], 0 if families is None else 1)
            yield from families or []
        yield up

    def _ledger(self) -> Iterator[Metric]:
        records = GaugeMetricFamily(
            "jobs_records",
            "Job records in the ledger, by queue, function and status.",
            labels=["queue", "function", "status"],
        )
        for (queue, function), counts in sorted(figures.ledger_counts(by_function=True).items()):
            for status, count in counts.items():
                records.add_metric([queue, function, status], count)
        yield records
        oldest = GaugeMetricFamily(
            "jobs_oldest_waiting_seconds",
            "Seconds the longest-waiting job of the queue that is due to run has waited for a worker "
            "(0: none waits).",
            labels=["queue"],
        )
        ages = figures.oldest_waiting_by_queue()
        for queue in sorted({*figures.queue_names(), *ages}):
            oldest.add_metric([queue], ages.get(queue, 0.0))
        yield oldest
        yield GaugeMetricFamily(
            "jobs_undispatched",
            "Records waiting for the relay because Redis could not take them when they were enqueued.",
            value=figures.undispatched_count(),
        )

    def _window(self) -> Iterator[Metric]:
        seconds = jobs_settings.METRICS_WINDOW
        figures_ = recent.collect(seconds)
        yield GaugeMetricFamily(
            "jobs_window_seconds",
            "Length of the recent window the jobs_window_* figures count (JOBS['METRICS_WINDOW']).",
            value=seconds,
        )
        yield _gauge(
            "jobs_window_ended",
            "Jobs that reached a final status in the recent window, by queue, function and status.",
            ["queue", "function", "status"],
            figures_.ended,
        )
        yield _gauge(
            "jobs_window_failed_attempts",
            "Attempts that failed in the recent window (retried or not), by queue and function.",
            ["queue", "function"],
            figures_.failed_attempts,
        )
        yield _gauge(
            "jobs_window_retries",
            "Attempts that failed in the recent window after which the job runs again.",
            ["queue", "function"],
            figures_.retries,
        )
        yield _gauge(
            "jobs_window_abandoned",
            "Attempts given up in the recent window because their worker died or was stopped mid-job.",
            ["queue", "function"],
            figures_.abandoned,
        )
        yield _histogram(
            "jobs_window_run_seconds",
            "Run time of the attempts that ended in the recent window, by outcome (finished, failed).",
            ["queue", "function", "outcome"],
            figures_.run_time,
        )
        yield _histogram(
            "jobs_window_start_latency_seconds",
            "Seconds from enqueue (or due time) to start of the first attempts that started in the "
            "recent window.",
            ["queue", "function"],
            figures_.latency,
        )

    def _rq(self) -> list[Metric]:
        return list(self.rq.collect())

    def _paused(self) -> list[Metric]:
        paused = figures.paused_queues()
        if paused is None:
            raise RedisError("the paused queues could not be read")
        family = GaugeMetricFamily("jobs_queue_paused", "1 when the queue is paused.", labels=["queue"])
        for queue in figures.queue_names():
            family.add_metric([queue], 1 if queue in paused else 0)
        return [family]

    def _cache(self) -> list[Metric]:
        counts = stats.read()
        families = {
            kind: CounterMetricFamily(
                name, f"Cache {kind} of the cache decorators, by namespace.", labels=["namespace"]
            )
            for kind, name in CACHE_COUNTERS.items()
        }
        bypasses = CounterMetricFamily(
            "jobs_cache_bypasses",
            "Calls passed through uncached, by namespace and reason.",
            labels=["namespace", "reason"],
        )
        for namespace, row in counts.items():
            for kind, family in families.items():
                family.add_metric([namespace], row[kind])
            for reason, count in row["reasons"].items():
                bypasses.add_metric([namespace, reason], count)
        return [*families.values(), bypasses]


def _guarded(part: str, read: Callable[[], list[Metric]]) -> list[Metric] | None:
    try:
        return read()
    except (*ERRORS, JobsConfigurationError) as exc:
        if part in QUEUES_REDIS and isinstance(exc, RedisTimeoutError):
            dispatch.breaker.open()
        logger.warning("Metrics: the %s figures could not be read", part, exc_info=True)
        return None
    except Exception:  # what Redis holds does not parse (a worker's hash written by hand, say)
        logger.exception("Metrics: the %s figures could not be read", part)
        return None


def _gauge(name: str, documentation: str, labels: list[str], values: dict[tuple, int]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _histogram(
    name: str, documentation: str, labels: list[str], values: dict[tuple, recent.Histogram]
) -> Metric:
    family = GaugeHistogramMetricFamily(name, documentation, labels=labels)
    for key, histogram in sorted(values.items()):
        buckets = [
            (_bound(bound), count) for bound, count in zip(recent.BUCKETS, histogram.counts, strict=True)
        ]
        family.add_metric(list(key), [*buckets, ("+Inf", histogram.count)], histogram.total)
    return family


def _bound(bound: float) -> str:
    return f"{bound:g}"


def registry() -> CollectorRegistry:
    """A registry that holds the `jobs` collector only (django-rq's included), for one scrape."""
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(JobsCollector())
    return collectors
