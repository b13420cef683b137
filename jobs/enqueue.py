"""Recording jobs in the caller's transaction and pushing them to Redis when it commits.

A job enqueued with ``depends_on`` is recorded deferred, with its dependencies, in the same transaction,
and is not pushed: the end of its last dependency releases it (see ``jobs.transitions``).
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, router, transaction
from django.utils import timezone

from . import statements, transitions
from .codec import encode_arguments
from .dispatch import dispatch
from .exceptions import InvalidArguments, InvalidJobDefinition, JobsError
from .models import FINAL, WAITING, Dependency, Job, Status
from .options import JobOptions, Requirement

if TYPE_CHECKING:
    from .decorator import JobFunction


def enqueue(
    job_function: JobFunction,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    fields: Mapping[str, Any] | None = None,
) -> Job:
    """Write the job's record (one INSERT) and push it to Redis on commit; returns the record.

    ``fields`` are more values of the record (a schedule's run gives its ``schedule_id`` and ``tick``).
    """
    options = job_function.options
    alias = options.using or router.db_for_write(Job)
    shared = {**_shared_fields(job_function), **(fields or {})}
    encoded_args, encoded_kwargs = encode_arguments(list(args), dict(kwargs))
    try:
        unique_key = options.unique_key_for(args, dict(kwargs))
    except JobsError:
        raise
    except Exception as exc:
        message = f"the unique_key of {job_function.name} cannot key these arguments: {exc!r}"
        raise InvalidArguments(message) from exc
    with _together(alias, options):
        if unique_key is None:
            row = {"id": uuid.uuid4(), "args": encoded_args, "kwargs": encoded_kwargs}
            [record] = statements.insert_batch(alias, shared, [row])
        else:
            record = Job(**shared, args=encoded_args, kwargs=encoded_kwargs, unique_key=unique_key)
            existing = _insert_unique(record, alias)
            if existing is not None:
                return existing
        [record] = _link(alias, [record], options.depends_on)
    _dispatch_on_commit(alias, [record], options)
    return record


def enqueue_many(
    job_function: JobFunction, calls: Sequence[tuple[Sequence[Any], Mapping[str, Any]]]
) -> list[Job]:
    """Write all records with one statement and push them in one pipeline on commit.

    The values the jobs share are prepared once; each call only encodes its arguments.
    """
    options = job_function.options
    if options.unique_key is not None:
        raise InvalidJobDefinition(
            "enqueue_many() does not take jobs with a unique key; enqueue them one by one"
        )
    alias = options.using or router.db_for_write(Job)
    shared = _shared_fields(job_function)
    rows = []
    for args, kwargs in calls:
        encoded_args, encoded_kwargs = encode_arguments(list(args), dict(kwargs))
        rows.append({"id": uuid.uuid4(), "args": encoded_args, "kwargs": encoded_kwargs})
    if not rows:
        return []
    with _together(alias, options):
        records = _link(alias, statements.insert_batch(alias, shared, rows), options.depends_on)
    _dispatch_on_commit(alias, records, options)
    return records


def _together(alias: str, options: JobOptions) -> contextlib.AbstractContextManager:
    """One transaction for a job's record and its dependencies; a job without any needs none."""
    return transaction.atomic(using=alias) if options.depends_on else contextlib.nullcontext()


def _dispatch_on_commit(alias: str, records: list[Job], options: JobOptions) -> None:
    """Push the records that may run when the transaction commits; deferred ones wait in the database."""
    waiting = [record for record in records if record.status in WAITING]
    if waiting:
        transaction.on_commit(functools.partial(dispatch, waiting, options), using=alias)


def _link(alias: str, records: list[Job], requirements: Sequence[Requirement]) -> list[Job]:
    """Record what deferred ``records`` wait for: one ``Dependency`` row per record and requirement, and
    each dependency marked as having dependents (which locks its row, so that it cannot end unseen
    while this transaction runs). Dependencies that have already ended count at once; the records
    are returned as that left them."""
    if not requirements:
        return records
    ids = [requirement.job_id for requirement in requirements]
    jobs = Job.objects.using(alias)
    if jobs.filter(pk__in=ids).update(has_dependents=True) != len(ids):
        found = {str(pk) for pk in jobs.filter(pk__in=ids).values_list("pk", flat=True)}
        missing = ", ".join(str(pk) for pk in ids if str(pk) not in found)
        raise InvalidArguments(
            f"depends_on names jobs that are not on database {alias!r}: {missing}", "depends_on"
        )
    Dependency.objects.using(alias).bulk_create(
        Dependency(
            dependent_id=record.pk,
            dependency_id=requirement.job_id,
            position=position,
            allow_failure=requirement.allow_failure,
        )
        for record in records
        for position, requirement in enumerate(requirements)
    )
    ended = list(jobs.filter(pk__in=ids, status__in=FINAL))
    if not ended:
        return records
    transitions.settle_dependents(ended, only=[record.pk for record in records])
    by_pk = jobs.in_bulk([record.pk for record in records])
    return [by_pk[record.pk] for record in records]


def _shared_fields(job_function: JobFunction) -> dict[str, Any]:
    """The fields of a job's record that do not depend on its arguments."""
    options = job_function.options
    queue = options.queue_name
    if queue not in settings.RQ_QUEUES:
        raise InvalidJobDefinition(
            f"job {job_function.name!r} names queue {queue!r}, which is not in RQ_QUEUES "
            f"(known: {', '.join(sorted(settings.RQ_QUEUES))})"
        )
    run_at = options.run_at()
    waits_for = len(options.depends_on)
    status = Status.SCHEDULED if run_at is not None else Status.QUEUED
    return {
        "function": job_function.name,
        "queue": queue,
        "status": Status.DEFERRED if waits_for else status,
        "max_attempts": options.attempts,
        "timeout": options.job_timeout,
        "priority": options.priority,
        "at_front": options.at_front,
        "backoff": options.backoff if isinstance(options.backoff, str) else list(options.backoff),
        "backoff_base": options.backoff_base,
        "scheduled_for": run_at,
        "enqueued_at": timezone.now(),
        "dependencies_total": waits_for,
        "dependencies_pending": waits_for,
    }


def _insert_unique(record: Job, alias: str) -> Job | None:
    """Insert a job with a unique key; if an active job holds the key, return that one instead."""
    for _ in range(3):
        try:
            with transaction.atomic(using=alias):
                record.save(force_insert=True, using=alias)
            return None
        except IntegrityError:
            existing = Job.objects.using(alias).active().filter(unique_key=record.unique_key).first()
            if existing is not None:
                return existing
            # The holder finished between our insert and our read: try again.
    raise JobsError(f"could not claim unique key {record.unique_key!r}: it changed hands three times")
