"""django-rq's Prometheus collector, which `jobs` serves beside its own figures rather than copying it.

``RQCollector`` (``django_rq.contrib.prometheus``) exports RQ's side of every queue of ``RQ_QUEUES``:
``rq_jobs`` (the queue's length and the size of each of RQ's registries, by queue and status),
``rq_workers`` (by name, state and queues) and each worker's ``rq_job_successful_total``,
``rq_job_failed_total`` and ``rq_working_seconds_total``. Like django-rq's own stats page, it runs RQ's
registry cleanup as it counts.
"""

from __future__ import annotations

import functools
from typing import Any

from .connection import with_timeouts


def rq_collector() -> Any:
    """A new django-rq ``RQCollector``; raises ``ImportError`` when prometheus-client is not installed.

    The collector opens its own connections from ``RQ_QUEUES`` at every scrape (checked against
    django-rq 4.2: ``django_rq.contrib.prometheus.get_connection``); they get the socket timeouts of
    `jobs`' own where the configuration sets none, so that a hung Redis cannot hang a scrape for ever.
    """
    from django_rq.contrib import prometheus

    if prometheus.RQCollector is None:  # django-rq sets it to None when prometheus_client cannot be imported
        raise ImportError("prometheus_client")
    if not getattr(prometheus.get_connection, "with_timeouts", False):
        prometheus.get_connection = _timing_out(prometheus.get_connection)
    return prometheus.RQCollector()


def _timing_out(get_connection: Any) -> Any:
    @functools.wraps(get_connection)
    def timing_out(*args: Any, **kwargs: Any) -> Any:
        return with_timeouts(get_connection(*args, **kwargs))

    timing_out.with_timeouts = True  # type: ignore[attr-defined]
    return timing_out
