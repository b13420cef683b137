"""Pushing job records to their RQ queues, or leaving them to the relay when Redis cannot take them."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta

from django.utils import timezone
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue, Retry
from rq.job import Job as RQJob
from rq.serializers import JSONSerializer

from . import connection, transitions
from .conf import jobs_settings
from .exceptions import JobNotRegistered
from .intervals import failure_ttl
from .models import Job
from .options import JobOptions
from .registry import resolve

logger = logging.getLogger("jobs")

#: The function every RQ job of this app calls; it runs the registered job named in its arguments.
RUNNER = "jobs.worker.execution.run_job"


def push(records: Sequence[Job], options: JobOptions | None = None) -> None:
    """Push records to Redis, one pipeline per queue. Raises ``RedisError`` when Redis cannot be reached.

    ``options`` are those the records were enqueued with; without them (the relay, a retry from the
    admin) each record's job function is looked up in the registry for its backoff.
    """
    by_queue: dict[str, list[Job]] = defaultdict(list)
    for record in records:
        by_queue[record.queue].append(record)
    for queue_name, queued in by_queue.items():
        queue = connection.get_queue(queue_name)
        with queue.connection.pipeline() as pipe:
            if options is not None and len(queued) > 1 and not any(_later(r) for r in queued):
                _add_batch_to_pipeline(queue, queued, pipe, options)
            else:
                for record in queued:
                    _add_to_pipeline(queue, record, pipe, options or _registered_options(record))
            pipe.execute()


def _later(record: Job) -> bool:
    return record.scheduled_for is not None and record.scheduled_for > timezone.now()


def _add_batch_to_pipeline(queue: Queue, records: Sequence[Job], pipe: Pipeline, options: JobOptions) -> None:
    """Push many records of one job function at once: the first takes RQ's whole enqueue path, and its
    RQ job, with only its id, arguments, description and retries changed, is saved for each of the
    others (one HSET each), whose ids are then pushed to the queue with one command.

    This is what RQ's ``enqueue_job`` writes for each of them, without its per-job Job construction,
    status write and queue-set update, which are the same for the whole batch.
    """
    first, *rest = records
    rq_job = _add_to_pipeline(queue, first, pipe, options)
    for record in rest:
        intervals = _retry_intervals(record, options)
        rq_job.id = str(record.pk)
        rq_job.args = runner_args(record)
        rq_job.description = f"{record.function} [{record.pk}]"
        rq_job.retries_left = len(intervals) if intervals else None
        rq_job.retry_intervals = intervals or None
        rq_job.save(pipeline=pipe)
    ids = [str(record.pk) for record in rest]
    if ids:
        (pipe.lpush if options.at_front else pipe.rpush)(queue.key, *ids)


def runner_args(record: Job) -> list:
    """The arguments of ``RUNNER`` for a record: what the worker needs to run it without a query."""
    return [str(record.pk), record.function, record.args, record.kwargs, record._state.db or "default"]


def _retry_intervals(record: Job, options: JobOptions) -> list[int]:
    if record.max_attempts != options.attempts:
        options = options.replace(max_attempts=record.max_attempts)
    return options.retry_intervals()[record.attempts :]


def _add_to_pipeline(queue: Queue, record: Job, pipe: Pipeline, options: JobOptions) -> RQJob:
    # Computed per record, so that jobs that fail together do not retry together. A record pushed again
    # (relay, reaper, reconciler) gets RQ retries only for the attempts it has left.
    intervals = options.replace(max_attempts=record.max_attempts).retry_intervals()[record.attempts :]
    rq_job = queue.create_job(
        RUNNER,
        args=[str(record.pk), record.function, record.args, record.kwargs, record._state.db or "default"],
        timeout=record.timeout,
        result_ttl=jobs_settings.RQ_RESULT_TTL,
        failure_ttl=failure_ttl(),
        description=f"{record.function} [{record.pk}]",
        job_id=str(record.pk),
        retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
    )
    if record.scheduled_for is not None and record.scheduled_for > timezone.now():
        return queue.schedule_job(rq_job, _whole_second_after(record.scheduled_for), pipeline=pipe)
    return queue.enqueue_job(rq_job, pipeline=pipe, at_front=options.at_front)


def _whole_second_after(moment: datetime) -> datetime:
    """RQ's scheduled registry keeps whole seconds: round up, so that a job never starts early."""
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def _registered_options(record: Job) -> JobOptions:
    try:
        return resolve(record.function).options
    except JobNotRegistered:
        return JobOptions()  # the worker will fail it with a clear error


def dispatch(records: Sequence[Job], options: JobOptions | None = None) -> bool:
    """Push records, or mark them undispatched so the relay pushes them later. Never raises."""
    if not records:
        return True
    try:
        push(records, options)
    except RedisError as exc:
        transitions.mark_undispatched(records, timezone.now())
        logger.warning("Redis unreachable, %d job(s) left for the relay: %s", len(records), exc)
        return False
    return True


def rq_jobs_of(records: Sequence[Job]) -> Iterator[tuple[Redis, list[RQJob]]]:
    """RQ's jobs of these records that Redis still holds, one batch per queue's connection."""
    by_queue: dict[str, list[str]] = defaultdict(list)
    for record in records:
        by_queue[record.queue].append(str(record.pk))
    for queue_name, ids in by_queue.items():
        redis = connection.get_connection(queue_name)
        found = RQJob.fetch_many(ids, connection=redis, serializer=JSONSerializer)
        yield redis, [rq_job for rq_job in found if rq_job is not None]


def delete_rq_jobs(records: Sequence[Job]) -> None:
    """Delete RQ's jobs of these records, with their entries in RQ's registries."""
    for redis, rq_jobs in rq_jobs_of(records):
        with redis.pipeline() as pipe:
            for rq_job in rq_jobs:
                rq_job.delete(pipeline=pipe)
            pipe.execute()
