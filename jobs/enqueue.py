"""Recording jobs in the caller's transaction and pushing them to Redis when it commits."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.db import IntegrityError, router, transaction

from .codec import encode_arguments
from .dispatch import dispatch
from .exceptions import InvalidJobDefinition, JobsError
from .models import Job, Status
from .registry import JobFunction


def enqueue(job_function: JobFunction, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Job:
    """Write the job's record (one INSERT) and push it to Redis on commit; returns the record."""
    options = job_function.options
    alias = options.using or router.db_for_write(Job)
    record = _build(job_function, args, kwargs, alias)
    unique_key = options.unique_key_for(args, dict(kwargs))
    if unique_key is None:
        record.save(force_insert=True, using=alias)
    else:
        record.unique_key = unique_key
        existing = _insert_unique(record, alias)
        if existing is not None:
            return existing
    transaction.on_commit(functools.partial(dispatch, [record], options), using=alias)
    return record


def enqueue_many(
    job_function: JobFunction, calls: Sequence[tuple[Sequence[Any], Mapping[str, Any]]]
) -> list[Job]:
    """Write all records in one bulk INSERT and push them in one pipeline on commit."""
    options = job_function.options
    if options.unique_key is not None:
        raise InvalidJobDefinition(
            "enqueue_many() does not take jobs with a unique key; enqueue them one by one"
        )
    alias = options.using or router.db_for_write(Job)
    records = [_build(job_function, args, kwargs, alias) for args, kwargs in calls]
    if not records:
        return []
    # One INSERT on PostgreSQL whatever the size; SQLite is split by Django at its 999-variable limit.
    Job.objects.using(alias).bulk_create(records)
    for record in records:
        record._state.adding = False
        record._state.db = alias
    transaction.on_commit(functools.partial(dispatch, records, options), using=alias)
    return records


def _build(job_function: JobFunction, args: Sequence[Any], kwargs: Mapping[str, Any], alias: str) -> Job:
    options = job_function.options
    queue = options.queue_name
    if queue not in settings.RQ_QUEUES:
        raise InvalidJobDefinition(
            f"job {job_function.name!r} names queue {queue!r}, which is not in RQ_QUEUES "
            f"(known: {', '.join(sorted(settings.RQ_QUEUES))})"
        )
    encoded_args, encoded_kwargs = encode_arguments(list(args), dict(kwargs))
    run_at = options.run_at()
    record = Job(
        function=job_function.name,
        queue=queue,
        status=Status.SCHEDULED if run_at is not None else Status.QUEUED,
        args=encoded_args,
        kwargs=encoded_kwargs,
        max_attempts=options.attempts,
        timeout=options.job_timeout,
        scheduled_for=run_at,
    )
    return record


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
