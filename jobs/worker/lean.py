"""The lean worker: RQ's SimpleWorker with the Redis round trips a `jobs` job does not need cut out.

A `jobs` job that succeeds starts in one pipeline and ends in another, and the worker's heartbeat,
suspension check and state writes are sent only when they matter; RQ's data model stays as it is, so that
django-rq's admin, ``rq info`` and RQ's registry cleanup read the queues as usual. The details are in
``jobs.transport.worker.LeanExecutionMixin``.
"""

from __future__ import annotations

from ..transport.worker import RQLeanWorker
from .base import LedgerWorkerMixin


class LeanWorker(LedgerWorkerMixin, RQLeanWorker):
    """The worker the README recommends: no fork, the ledger's features, RQ's bookkeeping trimmed."""
