"""Recording jobs in the caller's transaction and pushing them to Redis when it commits."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, router, transaction
from django.utils import timezone

from . import statements
from .codec import encode_arguments
from .dispatch import dispatch
from .exceptions import InvalidArguments, InvalidJobDefinition, JobsError
from .models import Job, Status

if TYPE_CHECKING:
    from .decorator import JobFunction


def enqueue(job_function: JobFunction, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Job:
    """Write the job's record (one INSERT) and push it to Redis on commit; returns the record."""
    options = job_function.options
    alias = options.using or router.db_for_write(Job)
    shared = _shared_fields(job_function)
    encoded_args, encoded_kwargs = encode_arguments(list(args), dict(kwargs))
    try:
        unique_key = options.unique_key_for(args, dict(kwargs))
    except JobsError:
        raise
    except Exception as exc:
        message = f"the unique_key of {job_function.name} cannot key these arguments: {exc!r}"
        raise InvalidArguments(message) from exc
    if unique_key is None:
        row = {"id": uuid.uuid4(), "args": encoded_args, "kwargs": encoded_kwargs}
        [record] = statements.insert_batch(alias, shared, [row])
    else:
        record = Job(**shared, args=encoded_args, kwargs=encoded_kwargs, unique_key=unique_key)
        existing = _insert_unique(record, alias)
        if existing is not None:
            return existing
    transaction.on_commit(functools.partial(dispatch, [record], options), using=alias)
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
    records = statements.insert_batch(alias, shared, rows)
    transaction.on_commit(functools.partial(dispatch, records, options), using=alias)
    return records


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
    return {
        "function": job_function.name,
        "queue": queue,
        "status": Status.SCHEDULED if run_at is not None else Status.QUEUED,
        "max_attempts": options.attempts,
        "timeout": options.job_timeout,
        "priority": options.priority,
        "scheduled_for": run_at,
        "enqueued_at": timezone.now(),
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
