"""Catching up on workflows: dependents that the end of a dependency should have reached and did not.

The transition that ends a job tells its dependents in its own transaction (see ``jobs.transitions``),
so nothing is left to catch up after a worker dies. What remains is what bypasses the transitions: a
dependency deleted with a plain ``QuerySet.delete()`` takes its edges with it, and a record edited by
hand may end without telling anyone. The reconciler's pass therefore tells the dependents of ended jobs
whose edges are still open, and releases deferred jobs that no longer wait for anything. Both are
conditional, so a pass that meets the work done meanwhile changes nothing. Each job is told of, or
released, in a transaction of its own: one that another process holds locked waits for a later pass,
the others do not wait for it (``jobs.upkeep.locks``).
"""

from __future__ import annotations

import logging

from django.db.models import Q

from .. import transitions
from ..dispatch import dispatch
from ..models import FINAL, Dependency, Job, Status
from . import locks

logger = logging.getLogger("jobs")

#: Ended dependencies told, and deferred jobs released, per pass.
BATCH = 500


def catch_up(alias: str) -> int:
    """One pass; returns how many dependencies were told of and deferred jobs released."""
    untold = (
        Dependency.objects.using(alias)
        .filter(done=False, dependency__status__in=FINAL)
        .filter(
            Q(dependency__status=Status.FINISHED)
            | Q(allow_failure=True)
            | Q(dependent__status=Status.DEFERRED)
        )
        .order_by()
        .values_list("dependency_id", flat=True)
        .distinct()[:BATCH]
    )
    ended = list(Job.objects.using(alias).filter(pk__in=list(untold)))
    if ended:
        logger.warning(
            "%d ended job(s) had dependents never told of their end: telling them now: %s",
            len(ended),
            ", ".join(str(record.pk) for record in ended[:20]),
        )
    told = 0
    for record in ended:
        with locks.skip_if_locked("Reconciler", f"job {record.pk}"):
            transitions.settle_dependents([record], push=dispatch)
            told += 1
    deferred = Job.objects.using(alias).deferred()
    orphans = deferred.exclude(dependency_links__done=False).values_list("pk", flat=True)[:BATCH]
    released: list[Job] = []
    for pk in orphans:
        with locks.skip_if_locked("Reconciler", f"job {pk}"):
            released += transitions.release_orphans(deferred.filter(pk=pk), push=dispatch)
    if released:
        logger.warning(
            "%d deferred job(s) waited for nothing (their dependencies were deleted): released: %s",
            len(released),
            ", ".join(str(record.pk) for record in released[:20]),
        )
    return told + len(released)
