"""Lifecycle signals, sent with ``sender=Job`` and ``job=<record>``."""

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("jobs")

job_started = Signal()
job_finished = Signal()
#: Sent when a job has failed for good (no attempts left); also carries ``exception``.
job_failed = Signal()


def announce(signal: Signal, job: Any, **kwargs: Any) -> None:
    """Send ``signal`` for an end that is recorded already: a receiver that raises is logged, and stops
    neither the other receivers nor the process's work (``job_started`` is sent as is: a receiver that
    raises fails the job's attempt, as the job's own code would)."""
    for receiver, response in signal.send_robust(sender=type(job), job=job, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "Job %s: a receiver of a lifecycle signal (%r) raised %r",
                job.pk,
                receiver,
                response,
                exc_info=(type(response), response, response.__traceback__),
            )


def announce_failed(job: Any, exception: BaseException) -> None:
    """``job_failed`` for a job that failed for good, as ``announce`` sends it."""
    announce(job_failed, job, exception=exception)
