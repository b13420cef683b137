"""django-rq's Prometheus collector, which `jobs` serves beside its own figures rather than copying it.

``RQCollector`` (``django_rq.contrib.prometheus``) exports RQ's side of every queue of ``RQ_QUEUES``:
``rq_jobs`` (the queue's length and the size of each of RQ's registries, by queue and status),
``rq_workers`` (by name, state and queues) and each worker's ``rq_job_successful_total``,
``rq_job_failed_total`` and ``rq_working_seconds_total``. Like django-rq's own stats page, it runs RQ's
registry cleanup as it counts.
"""

from __future__ import annotations

from typing import Any


def rq_collector() -> Any:
    """A new django-rq ``RQCollector``; raises ``ImportError`` when prometheus-client is not installed."""
    from django_rq.contrib.prometheus import RQCollector

    if RQCollector is None:  # django-rq sets it to None when prometheus_client cannot be imported
        raise ImportError("prometheus_client")
    return RQCollector()
