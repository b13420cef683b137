"""Lifecycle signals, sent with ``sender=Job`` and ``job=<record>``."""

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("jobs")

job_started = Signal()
job_finished = Signal()
#: Sent when a job has failed for good (no attempts left); also carries ``exception``.
job_failed = Signal()


def announce_failed(job: Any, exception: BaseException) -> None:
    """Send ``job_failed`` from the upkeep or a transition: a receiver that raises is logged, and stops
    neither the other receivers nor the process's work."""
    sender = type(job)
    for receiver, response in job_failed.send_robust(sender=sender, job=job, exception=exception):
        if isinstance(response, Exception):
            logger.error(
                "Job %s: a receiver of job_failed (%r) raised %r",
                job.pk,
                receiver,
                response,
                exc_info=(type(response), response, response.__traceback__),
            )
