"""What a person may do to jobs: retry failed ones, cancel waiting ones, and forget deleted ones in Redis.

Each operation first changes the rows with a conditional UPDATE inside a transaction (the rows are locked
where the database can, and the status is tested again in the UPDATE), so two people, or one person's
double submit, change a row once; only the rows it changed are then touched in Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from redis.exceptions import RedisError

from ..dispatch import dispatch
from ..models import WAITING, Job, Status
from ..transport import queues

logger = logging.getLogger("jobs")

#: Rows locked and updated per statement (SQLite takes at most 999 parameters in older builds).
CHUNK = 500


@dataclass(frozen=True)
class Outcome:
    """The records an operation changed, and how many of those asked for it refused."""

    changed: list[Job] = field(default_factory=list)
    refused: int = 0
    #: Retried records that Redis could not take yet; the relay pushes them when it answers.
    undispatched: int = 0


def retry(queryset: QuerySet[Job], user: Any = None) -> Outcome:
    """Put failed jobs through again with the same arguments; the others are refused.

    The record keeps its id, its attempts count and its failed attempts, so the history shows every
    run. RQ's job of the same id (in its failed registry) is deleted first, so the new run starts clean.
    """
    now = timezone.now()
    fields = {
        "status": Status.QUEUED,
        "retried_at": now,
        "retried_by": user if getattr(user, "pk", None) else None,
        "finished_at": None,
        "scheduled_for": None,
        "undispatched_since": None,
        "progress": 0,
        "progress_message": "",
        "result": None,
        "error_class": "",
        "error_message": "",
        "traceback": "",
    }
    outcome = _transition(queryset, (Status.FAILED,), fields)
    if not outcome.changed:
        return outcome
    try:
        queues.delete(outcome.changed)
    except RedisError as exc:
        logger.warning("Could not remove RQ's failed jobs before a retry: %s", exc)
    dispatch(outcome.changed)
    undispatched = sum(1 for record in outcome.changed if record.undispatched_since is not None)
    return Outcome(outcome.changed, outcome.refused, undispatched)


def cancel(queryset: QuerySet[Job]) -> Outcome:
    """Cancel queued, scheduled or retrying jobs; started and ended ones are refused.

    A cancelled record is never started (the worker claims only waiting records); RQ's job is also
    moved to its canceled registry so that RQ's tools agree.
    """
    outcome = _transition(queryset, WAITING, {"status": Status.CANCELLED, "finished_at": timezone.now()})
    if outcome.changed:
        try:
            queues.cancel(outcome.changed)
        except RedisError as exc:
            logger.warning("Could not cancel RQ's jobs (the records are cancelled): %s", exc)
    return outcome


def forget(records: Sequence[Job]) -> None:
    """Delete what RQ keeps of deleted records that no worker is running. Never raises."""
    idle = [record for record in records if record.status != Status.STARTED]
    try:
        queues.delete(idle)
    except RedisError as exc:
        logger.warning("Could not delete RQ's jobs of deleted records: %s", exc)


def _transition(queryset: QuerySet[Job], allowed: Iterable[str], fields: dict[str, Any]) -> Outcome:
    alias = queryset.db
    allowed = tuple(allowed)
    changed: list[Job] = []
    with transaction.atomic(using=alias):
        pks = list(queryset.order_by().values_list("pk", flat=True).distinct())
        for chunk in _chunks(pks):
            rows = list(Job.objects.using(alias).select_for_update().filter(pk__in=chunk, status__in=allowed))
            Job.objects.using(alias).filter(pk__in=[r.pk for r in rows], status__in=allowed).update(**fields)
            for row in rows:
                for name, value in fields.items():
                    setattr(row, name, value)
            changed.extend(rows)
    return Outcome(changed, len(pks) - len(changed))


def _chunks(items: list) -> Iterator[list]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]
