"""Retention: deleting old records, failed ones kept longer, and RQ's own TTLs set to match.

Finished and cancelled records go after ``RETAIN_FINISHED`` seconds and beyond the newest
``RETAIN_FINISHED_PER_QUEUE`` of each queue; failed records after ``RETAIN_FAILED`` seconds. Waiting
and running records are never pruned, nor the records of jobs that a job still to run depends on (it
reads their results). RQ keeps no finished job (``RQ_RESULT_TTL`` is 0 by default, the record holds the
result) and keeps a failed one in its ``FailedJobRegistry`` for ``RETAIN_FAILED``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, router, transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from ..conf import jobs_settings
from ..models import ACTIVE, Dependency, Job, Status
from . import locks

logger = logging.getLogger("jobs")

BATCH = 1000
DONE = (Status.FINISHED, Status.CANCELLED)


@dataclass
class Pruned:
    finished: int = 0
    over_count: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.finished + self.over_count + self.failed


def prune(using: str | None = None, limit: int | None = None) -> Pruned:
    """Delete what retention says is due, at most ``limit`` records per rule (None: all of them)."""
    alias = using or router.db_for_write(Job)
    jobs = Job.objects.using(alias)
    now = timezone.now()
    pruned = Pruned()
    if jobs_settings.RETAIN_FINISHED:
        cutoff = now - timedelta(seconds=jobs_settings.RETAIN_FINISHED)
        pruned.finished = _delete(jobs.filter(status__in=DONE, finished_at__lt=cutoff), limit)
    if jobs_settings.RETAIN_FINISHED_PER_QUEUE:
        keep = int(jobs_settings.RETAIN_FINISHED_PER_QUEUE)
        for queue in jobs.filter(status__in=DONE).values_list("queue", flat=True).distinct().order_by():
            done = jobs.filter(queue=queue, status__in=DONE)
            first_beyond = done.order_by("-finished_at").values_list("finished_at", flat=True)[
                keep : keep + 1
            ]
            if first_beyond:
                pruned.over_count += _delete(done.filter(finished_at__lte=first_beyond[0]), limit)
    if jobs_settings.RETAIN_FAILED:
        cutoff = now - timedelta(seconds=jobs_settings.RETAIN_FAILED)
        pruned.failed = _delete(jobs.filter(status=Status.FAILED, finished_at__lt=cutoff), limit)
    if pruned.total:
        logger.info(
            "Pruned %d finished (age), %d finished (count) and %d failed record(s)",
            pruned.finished,
            pruned.over_count,
            pruned.failed,
        )
    return pruned


def _read_by_a_waiting_job() -> Exists:
    """Records that a job which has not ended yet depends on, or one that failed and may be retried (or
    brought back by the retry of a dependency that failed): it reads their results when it runs."""
    may_run = (*ACTIVE, Status.FAILED)
    return Exists(Dependency.objects.filter(dependency=OuterRef("pk"), dependent__status__in=may_run))


def _delete(queryset: QuerySet[Job], limit: int | None) -> int:
    """Delete in batches, so that no statement holds the table for long.

    Each batch is deleted only where its rows are still in the state they were chosen for: a record
    retried between the SELECT and the DELETE is kept. The rows are locked first (where the database
    can) so that nothing changes them between the conditional SELECT and Django's cascading DELETE; a
    row another process holds locked (stopped inside a transaction, say) is left for a later pass
    rather than waited for. So is a record whose attempt or link another process holds locked, which
    the cascade waits for (within the bound, ``jobs.upkeep.locks``): its batch is then deleted one
    record at a time, the others go.
    """
    queryset = queryset.exclude(_read_by_a_waiting_job())
    deleted = 0
    left: set = set()  # chosen, then found locked or no longer due: not chosen again in this call
    while limit is None or deleted < limit:
        size = BATCH if limit is None else min(BATCH, limit - deleted)
        chosen = queryset.exclude(pk__in=list(left)) if left else queryset
        batch = list(chosen.order_by("finished_at").values_list("pk", flat=True)[:size])
        if not batch:
            break
        try:
            deleted += _delete_batch(queryset, batch, left)
        except DatabaseError as exc:
            if not locks.is_lock_timeout(exc):
                raise
            left.update(batch)
            for pk in batch:
                with locks.skip_if_locked("Retention", f"job {pk}"):
                    deleted += _delete_batch(queryset, [pk], left)
    return deleted


def _delete_batch(queryset: QuerySet[Job], batch: list, left: set) -> int:
    with transaction.atomic(using=queryset.db):
        still_due = list(
            queryset.filter(pk__in=batch).select_for_update(skip_locked=True).values_list("pk", flat=True)
        )
        left.update(set(batch) - set(still_due))
        if not still_due:
            return 0
        # Counted as deleted (the DELETE tests the conditions again: a job that came to depend on one
        # of them meanwhile keeps it), not as chosen.
        _total, by_model = queryset.filter(pk__in=still_due).delete()
    return by_model.get(queryset.model._meta.label, 0)
