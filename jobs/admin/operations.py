"""What a person may do to jobs: retry failed ones, cancel waiting ones, and forget deleted ones in Redis.

Each operation first changes the rows by its transition (``jobs.transitions.retry`` and ``cancel``: a
conditional UPDATE on locked rows), so two people, or one person's double submit, change a row once;
only the rows it changed are then touched in Redis.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .. import transitions
from ..dispatch import breaker, dispatch
from ..models import Job, Status
from ..transport import queues

logger = logging.getLogger("jobs")


@dataclass(frozen=True)
class Outcome:
    """The records an operation changed, and how many of those asked for it refused."""

    changed: list[Job] = field(default_factory=list)
    refused: int = 0
    #: Retried records that Redis could not take yet; the relay pushes them when it answers.
    undispatched: int = 0
    #: Failed records not retried: another active job holds their unique key.
    key_held: int = 0
    #: Failed records not retried: their queue is not in ``RQ_QUEUES``.
    queue_unknown: int = 0
    #: Jobs that a retried one had failed, waiting for it again.
    waiting_again: int = 0

    def counts(self) -> Counter[str]:
        """How many records went each way, by field name (``changed`` counts the records changed)."""
        return Counter(
            changed=len(self.changed),
            refused=self.refused,
            undispatched=self.undispatched,
            key_held=self.key_held,
            queue_unknown=self.queue_unknown,
            waiting_again=self.waiting_again,
        )


def retry(queryset: QuerySet[Job], user: Any = None, selection: QuerySet[Job] | None = None) -> Outcome:
    """Put failed jobs through again with the same arguments; the others are refused.

    The record keeps its id, its attempts count and its failed attempts, so the history shows every
    run. RQ's job of the same id (in its failed registry) is deleted first, so the new run starts clean.
    ``selection`` is all that the person chose when ``queryset`` is one batch of it
    (``transitions.retry``).
    """
    retried = transitions.retry(queryset, user, selection)
    if retried.changed:
        # What is left of it in RQ goes before the push, or with the relay's push (``relay._relay``).
        _in_redis(queues.delete, retried.changed, "remove RQ's failed jobs before a retry")
        dispatch(retried.changed)
    return Outcome(
        retried.changed,
        retried.refused,
        undispatched=sum(1 for record in retried.changed if record.undispatched_since is not None),
        key_held=retried.key_held,
        queue_unknown=retried.queue_unknown,
        waiting_again=retried.waiting_again,
    )


def cancel(queryset: QuerySet[Job]) -> Outcome:
    """Cancel queued, scheduled, retrying or deferred jobs; started and ended ones are refused. The jobs
    waiting for a cancelled one are cancelled too (or released, if they allowed it to fail).

    A cancelled record is never started (the worker claims only waiting records); RQ's job is also
    moved to its canceled registry so that RQ's tools agree.
    """
    outcome = Outcome(*transitions.cancel(queryset, push=dispatch))
    if outcome.changed:
        _in_redis(queues.cancel, outcome.changed, "cancel RQ's jobs (the records are cancelled)")
    return outcome


def delete(queryset: QuerySet[Job], deleting: Callable[[QuerySet[Job]], object]) -> list[Job]:
    """Delete records with ``deleting`` (the admin's own delete), after the jobs still waiting for them
    are cancelled, or released when they allowed them to fail, in the same transaction; then forget
    them in Redis. Returns the records deleted.

    The records are locked first (in one order), and read again once locked: a retry or a cancel that
    holds one of them (another person's, at the same moment) commits before its dependents are settled,
    so that a dependent the retry made wait for it again is cancelled with it, not left waiting for a
    deleted job (which the upkeep would then release, to run without it).
    """
    alias = queryset.db
    with transaction.atomic(using=alias):
        pks = list(queryset.order_by().values_list("pk", flat=True))
        locked = list(
            Job.objects.using(alias)
            .select_for_update()
            .filter(pk__in=pks)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        records = list(queryset.filter(pk__in=locked))
        transitions.settle_deleted(records, push=dispatch)
        deleting(Job.objects.using(alias).filter(pk__in=[record.pk for record in records]))
    forget(records)
    return records


def forget(records: Sequence[Job]) -> None:
    """Delete what RQ keeps of deleted records that no worker is running. Never raises."""
    idle = [record for record in records if record.status != Status.STARTED]
    _in_redis(queues.delete, idle, "delete RQ's jobs of deleted records")


def _in_redis(action: Callable[[Sequence[Job]], object], records: Sequence[Job], what: str) -> None:
    """RQ's side of a person's action, which the records do not need (a worker runs only what a record
    holds waiting). Never raises. Skipped while this process's pushes skip Redis (``dispatch.breaker``,
    after a timeout), and a timeout opens it: a Redis that hangs costs one action one socket timeout,
    not every batch of a "retry all" two."""
    if not records:
        return
    if breaker.is_open():
        logger.warning("Could not %s: Redis timed out a moment ago, left alone", what)
        return
    try:
        action(records)
    except RedisTimeoutError as exc:
        breaker.open()
        logger.warning("Could not %s: %s", what, exc)
    except RedisError as exc:
        logger.warning("Could not %s: %s", what, exc)
