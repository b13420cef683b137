"""Lifecycle signals, sent with ``sender=Job`` and ``job=<record>``."""

from django.dispatch import Signal

job_started = Signal()
job_finished = Signal()
#: Sent when a job has failed for good (no attempts left); also carries ``exception``.
job_failed = Signal()
